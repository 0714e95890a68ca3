//! A target that hangs: a TCP front that relays to a real server until told to hang, then
//! accepts connections and reads requests but never answers (a stuck service behind a load
//! balancer that still accepts). The readiness gate passes through it first; the load then
//! meets the hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running front.
pub struct HangingFront {
    /// Where clients connect.
    pub addr: SocketAddr,
    hung: Arc<AtomicBool>,
    /// Connections held open, unanswered.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

/// Copies `from` to `to` until either closes or the front hangs; then keeps `from` open.
fn relay(
    mut from: TcpStream,
    mut to: TcpStream,
    hung: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if hung.load(Ordering::SeqCst) {
            held.lock().unwrap().push(from);
            return;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if hung.load(Ordering::SeqCst) {
                    // A request read after the hang: swallowed, never answered.
                    held.lock().unwrap().push(from);
                    return;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl HangingFront {
    /// A front relaying to `upstream`.
    pub fn start(upstream: SocketAddr) -> HangingFront {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hung = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (h, k) = (hung.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if h.load(Ordering::SeqCst) {
                    k.lock().unwrap().push(conn);
                    continue;
                }
                let Ok(up) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (c2, u2) = (conn.try_clone().unwrap(), up.try_clone().unwrap());
                let (h1, k1, h2, k2) = (h.clone(), k.clone(), h.clone(), k.clone());
                std::thread::spawn(move || relay(conn, up, h1, k1));
                std::thread::spawn(move || relay(u2, c2, h2, k2));
            }
        });
        HangingFront {
            addr,
            hung,
            _held: held,
        }
    }

    /// From now on nothing is answered, on new connections or open ones.
    pub fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }
}
