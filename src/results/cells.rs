//! The results' own vocabulary, below both the engine that writes it and the report that reads
//! it: what an endpoint is ([`Endpoint`], [`Kind`]), why a request failed ([`FailureClass`]),
//! what one endpoint did in one span ([`Cell`]: histograms of µs, and [`Phases`]: where its
//! requests' time went), and the histogram text every file keeps ([`encode`], [`decode`];
//! [`CellLine`] for a fleet worker's lossless seconds).

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// What an endpoint counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One HTTP request.
    #[default]
    Request,
    /// One task: all its requests, from the first sent to the last answered.
    Task,
}

/// A request kind (named as Locust named it), or a task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// HTTP method (`TASK` for a task).
    pub method: String,
    /// Request name (`/challenge-response/v1/[SESSION_ID]`), or the task's unit name.
    pub name: String,
    /// The task issuing it.
    pub task: String,
    /// Request or task.
    pub kind: Kind,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// An unexpected HTTP status.
    Status,
    /// The request timed out.
    Timeout,
    /// Connection refused or unreachable.
    Connect,
    /// The TLS handshake failed (an untrusted or wrong certificate): permanent, not a refusal.
    Tls,
    /// Connection reset mid-request.
    Reset,
    /// Any other transport error.
    Transport,
    /// The body was not what the contract says (garbage, missing fields, a bad signature).
    Body,
    /// Provisioning answered `status: failed`.
    Failed,
    /// The EAR said `contraindicated`.
    Contraindicated,
    /// The EAR said `warning`.
    Warning,
}

impl FailureClass {
    /// The name used in results.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Status => "status",
            FailureClass::Timeout => "timeout",
            FailureClass::Connect => "connect",
            FailureClass::Tls => "tls",
            FailureClass::Reset => "reset",
            FailureClass::Transport => "transport",
            FailureClass::Body => "body",
            FailureClass::Failed => "failed",
            FailureClass::Contraindicated => "contraindicated",
            FailureClass::Warning => "warning",
        }
    }

    /// Every class.
    pub const ALL: [FailureClass; 10] = [
        FailureClass::Status,
        FailureClass::Timeout,
        FailureClass::Connect,
        FailureClass::Tls,
        FailureClass::Reset,
        FailureClass::Transport,
        FailureClass::Body,
        FailureClass::Failed,
        FailureClass::Contraindicated,
        FailureClass::Warning,
    ];

    /// The class a results name stands for.
    pub fn parse(name: &str) -> Option<FailureClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// A new histogram of microseconds.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// Where the requests of one endpoint spent their time in one span, as k6 splits it (µs), and
/// the connections behind them. Every request that reached a phase is in it, failed or not.
#[derive(Clone)]
pub struct Phases {
    /// TCP handshakes (requests that opened a connection).
    pub connect: Histogram<u64>,
    /// TLS handshakes, likewise.
    pub tls: Histogram<u64>,
    /// Request written → first byte of the response (time to first byte).
    pub wait: Histogram<u64>,
    /// First byte → last byte of the response.
    pub receive: Histogram<u64>,
    /// Connections opened.
    pub opened: u64,
    /// Kept-alive connections found closed by the server.
    pub closed: u64,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            connect: new_hist(),
            tls: new_hist(),
            wait: new_hist(),
            receive: new_hist(),
            opened: 0,
            closed: 0,
        }
    }
}

impl Phases {
    /// The phases' names, in the order [`Phases::each`] gives them (the names every file uses).
    pub const NAMES: [&'static str; 4] = ["connect", "tls", "wait", "receive"];

    /// Each phase's histogram with its name.
    pub fn each(&self) -> [(&'static str, &Histogram<u64>); 4] {
        [
            ("connect", &self.connect),
            ("tls", &self.tls),
            ("wait", &self.wait),
            ("receive", &self.receive),
        ]
    }

    /// Adds another span's phases.
    pub fn merge(&mut self, other: &Phases) {
        for (mine, theirs) in [
            (&mut self.connect, &other.connect),
            (&mut self.tls, &other.tls),
            (&mut self.wait, &other.wait),
            (&mut self.receive, &other.receive),
        ] {
            mine.add(theirs).expect("auto-resizing histograms merge");
        }
        self.opened += other.opened;
        self.closed += other.closed;
    }
}

/// What one endpoint did in one span: latencies of successes and of failures apart.
#[derive(Clone)]
pub struct Cell {
    /// Latency of successful requests (or tasks), µs.
    pub ok: Histogram<u64>,
    /// Latency of failed ones, µs.
    pub failed: Histogram<u64>,
    /// Latency from the intended start (open model, tasks), µs.
    pub corrected: Option<Histogram<u64>>,
    /// Failures that could not connect (the dead-target watch counts them).
    pub refused: u64,
    /// Failures that got no answer within the request timeout (the watch counts them too).
    pub timed_out: u64,
    /// Response bytes.
    pub bytes: u64,
    /// Where its requests' time went (`None` until a request recorded a phase; never for a
    /// task's unit).
    pub phases: Option<Box<Phases>>,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            ok: new_hist(),
            failed: new_hist(),
            corrected: None,
            refused: 0,
            timed_out: 0,
            bytes: 0,
            phases: None,
        }
    }
}

impl Cell {
    /// Successes.
    pub fn successes(&self) -> u64 {
        self.ok.len()
    }

    /// Failures.
    pub fn failures(&self) -> u64 {
        self.failed.len()
    }

    /// Every request.
    pub fn count(&self) -> u64 {
        self.ok.len() + self.failed.len()
    }

    /// Latency of every request, successes and failures (Locust's meaning).
    pub fn all(&self) -> Histogram<u64> {
        let mut h = self.ok.clone();
        h.add(&self.failed).expect("auto-resizing histograms merge");
        h
    }

    /// Adds another cell.
    pub fn merge(&mut self, other: &Cell) {
        self.ok
            .add(&other.ok)
            .expect("auto-resizing histograms merge");
        self.failed
            .add(&other.failed)
            .expect("auto-resizing histograms merge");
        if let Some(c) = &other.corrected {
            self.corrected
                .get_or_insert_with(new_hist)
                .add(c)
                .expect("auto-resizing histograms merge");
        }
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.bytes += other.bytes;
        if let Some(p) = &other.phases {
            self.phases.get_or_insert_with(Box::default).merge(p);
        }
    }
}

/// A histogram as base64 of its V2 deflate encoding (empty string for an empty one).
pub fn encode(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return String::new();
    }
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("histograms serialize into a Vec");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes [`encode`]'s output (an empty histogram for an empty string).
pub fn decode(text: &str) -> Option<Histogram<u64>> {
    if text.is_empty() {
        return Some(new_hist());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()
}

/// One second (or the drain) of a fleet worker, lossless: one line of `cells.jsonl`, what the
/// coordinator merges by adding histograms.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CellLine {
    /// The UTC second; `None` for the drain (completions after the deadline).
    pub unix: Option<i64>,
    /// Users started minus stopped over it.
    pub users: i64,
    /// One per endpoint, in `endpoints.json`'s order.
    pub cells: Vec<CellText>,
}

/// A [`Cell`] as text: histograms in [`encode`]'s form.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CellText {
    /// Successful latencies.
    pub ok: String,
    /// Failed latencies.
    pub failed: String,
    /// Corrected latencies (open model, tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<String>,
    /// Refused connections.
    pub refused: u64,
    /// Requests that timed out.
    #[serde(default)]
    pub timed_out: u64,
    /// Response bytes.
    pub bytes: u64,
    /// Where the requests' time went (absent in files written before phases were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhasesText>,
}

/// [`Phases`] as text: histograms in [`encode`]'s form.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PhasesText {
    /// TCP handshakes.
    pub connect: String,
    /// TLS handshakes.
    pub tls: String,
    /// Time to first byte.
    pub wait: String,
    /// First byte to last.
    pub receive: String,
    /// Connections opened.
    pub opened: u64,
    /// Kept-alive connections found closed by the server.
    pub closed: u64,
}

impl PhasesText {
    /// The text of a cell's phases.
    pub fn of(p: &Phases) -> PhasesText {
        PhasesText {
            connect: encode(&p.connect),
            tls: encode(&p.tls),
            wait: encode(&p.wait),
            receive: encode(&p.receive),
            opened: p.opened,
            closed: p.closed,
        }
    }

    /// The phases back; `None` when a histogram does not decode.
    pub fn phases(&self) -> Option<Phases> {
        Some(Phases {
            connect: decode(&self.connect)?,
            tls: decode(&self.tls)?,
            wait: decode(&self.wait)?,
            receive: decode(&self.receive)?,
            opened: self.opened,
            closed: self.closed,
        })
    }
}

impl CellText {
    /// The text of a cell.
    pub fn of(c: &Cell) -> CellText {
        CellText {
            ok: encode(&c.ok),
            failed: encode(&c.failed),
            corrected: c.corrected.as_ref().map(encode),
            refused: c.refused,
            timed_out: c.timed_out,
            bytes: c.bytes,
            phases: c.phases.as_deref().map(PhasesText::of),
        }
    }

    /// The cell back; `None` when a histogram does not decode.
    pub fn cell(&self) -> Option<Cell> {
        Some(Cell {
            ok: decode(&self.ok)?,
            failed: decode(&self.failed)?,
            corrected: match &self.corrected {
                Some(t) => Some(decode(t)?),
                None => None,
            },
            refused: self.refused,
            timed_out: self.timed_out,
            bytes: self.bytes,
            phases: match &self.phases {
                Some(t) => Some(Box::new(t.phases()?)),
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cells_phases_survive_its_text_and_older_text_reads_without_them() {
        let mut cell = Cell::default();
        cell.ok.record(1500).unwrap();
        let mut phases = Phases::default();
        phases.connect.record(300).unwrap();
        phases.wait.record(1000).unwrap();
        phases.wait.record(1200).unwrap();
        phases.opened = 1;
        phases.closed = 1;
        cell.phases = Some(Box::new(phases));
        let text = serde_json::to_string(&CellText::of(&cell)).unwrap();
        let back: CellText = serde_json::from_str(&text).unwrap();
        let back = back.cell().unwrap();
        let p = back.phases.as_deref().unwrap();
        assert_eq!((p.connect.len(), p.wait.len(), p.tls.len()), (1, 2, 0));
        assert_eq!((p.opened, p.closed), (1, 1));
        let mut merged = back.clone();
        merged.merge(&back);
        assert_eq!(merged.phases.as_deref().unwrap().wait.len(), 4);
        // A worker's line from before phases were recorded.
        let old: CellText =
            serde_json::from_str(r#"{"ok":"","failed":"","refused":0,"bytes":2}"#).unwrap();
        let old = old.cell().unwrap();
        assert!(old.phases.is_none() && old.bytes == 2);
    }
}
