//! A live page in headless Chromium, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages, NUL-terminated, Chromium reading fd 3 and writing
//! fd 4): open a page, evaluate script in it, reload it, open another. For pages that keep a
//! stream open (the live dashboard), where `--dump-dom` would dump before any frame arrives.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};

use serde_json::{json, Value};

/// A headless Chromium with one page attached.
pub struct LivePage {
    child: Child,
    to: File,
    from: BufReader<File>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

/// A pipe whose two ends close on exec (the child gets its own copies on fds 3 and 4).
fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

impl LivePage {
    /// Starts Chromium on `url` and attaches to its page.
    pub fn open(url: &str) -> LivePage {
        let profile = tempfile::tempdir().unwrap();
        let (chrome_reads, we_write) = pipe();
        let (we_read, chrome_writes) = pipe();
        let mut cmd = super::browser::chromium();
        cmd.arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--remote-debugging-pipe")
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first (fds 3 and 4 may be the pipes themselves), then in place;
                // dup2 leaves close-on-exec off the copies.
                let r = libc::fcntl(chrome_reads, libc::F_DUPFD, 10);
                let w = libc::fcntl(chrome_writes, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium runs");
        unsafe {
            libc::close(chrome_reads);
            libc::close(chrome_writes);
        }
        let mut page = LivePage {
            child,
            to: unsafe { File::from_raw_fd(we_write) },
            from: BufReader::new(unsafe { File::from_raw_fd(we_read) }),
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let targets = page.call("Target.getTargets", json!({}), false);
        let id = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page")["targetId"]
            .as_str()
            .unwrap()
            .to_string();
        page.attach(&id);
        page
    }

    fn attach(&mut self, target: &str) {
        let a = self.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
            false,
        );
        self.session = a["sessionId"].as_str().unwrap().to_string();
    }

    /// Opens another page on `url` and drives that one from now on.
    pub fn open_another(&mut self, url: &str) {
        let t = self.call("Target.createTarget", json!({"url": url}), false);
        let id = t["targetId"].as_str().unwrap().to_string();
        self.attach(&id);
    }

    /// Sends one command and waits for its answer (events in between are skipped).
    fn call(&mut self, method: &str, params: Value, in_page: bool) -> Value {
        self.next += 1;
        let mut m = json!({"id": self.next, "method": method, "params": params});
        if in_page {
            m["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&m).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            self.wait_for_words(method);
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).unwrap();
            assert!(n > 0, "chromium closed the pipe");
            buf.pop();
            let answer: Value = serde_json::from_slice(&buf).unwrap();
            if answer["id"] == self.next {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Waits until Chromium has written something to read, failing the test when it wrote
    /// nothing for [`super::browser::CHROMIUM_BOUND`] (a stuck browser, not a hung binary).
    fn wait_for_words(&mut self, method: &str) {
        use std::os::fd::AsRawFd;
        if !self.from.buffer().is_empty() {
            return;
        }
        let mut fd = libc::pollfd {
            fd: self.from.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let bound = super::browser::CHROMIUM_BOUND.as_millis() as i32;
        // SAFETY: one valid pollfd, its count 1.
        let ready = unsafe { libc::poll(&mut fd, 1, bound) };
        assert!(
            ready != 0,
            "{method}: chromium said nothing in {:?}",
            super::browser::CHROMIUM_BOUND
        );
    }

    /// The value of a script expression in the page (JSON-serialisable).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
            true,
        );
        r["result"]["value"].clone()
    }

    /// A PNG of the page as laid out now, written to `png`.
    pub fn screenshot(&mut self, png: &std::path::Path) {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
            true,
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(png, bytes).unwrap();
    }

    /// Reloads the page (as a browser's reload button does).
    pub fn reload(&mut self) {
        self.call("Page.reload", json!({}), true);
    }
}

impl Drop for LivePage {
    fn drop(&mut self) {
        // Asked to close, Chromium takes its renderers with it; killed, in case it does not.
        let close = b"{\"id\":999999,\"method\":\"Browser.close\",\"params\":{}}\0";
        let _ = self.to.write_all(close);
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
