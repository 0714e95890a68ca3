//! CSV formats: Locust-compatible `stats.csv`, `stats_history.csv`, `failures.csv` (same
//! column names, so the seed's plotting scripts read them), our per-second `timeline.csv`, and
//! the HdrHistogram V2 interval log (`latency.hlog`).

use std::path::Path;

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Locust's percentile columns.
pub const LOCUST_PERCENTILES: [(f64, &str); 11] = [
    (0.50, "50%"),
    (0.66, "66%"),
    (0.75, "75%"),
    (0.80, "80%"),
    (0.90, "90%"),
    (0.95, "95%"),
    (0.98, "98%"),
    (0.99, "99%"),
    (0.999, "99.9%"),
    (0.9999, "99.99%"),
    (1.0, "100%"),
];

/// Quotes a CSV field when it needs it.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Microseconds → milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Milliseconds with microsecond precision, as every file writes them.
pub fn ms3(us: u64) -> String {
    format!("{:.3}", ms(us))
}

fn percentile_cells(h: &Histogram<u64>) -> String {
    LOCUST_PERCENTILES
        .iter()
        .map(|(q, _)| {
            if h.is_empty() {
                "N/A".to_string()
            } else {
                ms3(h.value_at_quantile(*q))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn percentile_names() -> String {
    LOCUST_PERCENTILES
        .iter()
        .map(|(_, n)| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(",")
}

/// `stats.csv` header.
pub fn stats_header() -> String {
    format!(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,{}\n",
        percentile_names().replace('"', "")
    )
}

/// Figures one row of `stats.csv` or `stats_history.csv` needs (Locust's meaning: the latency
/// of every request, failures included).
pub struct RowFigures<'a> {
    /// Latency histogram (µs).
    pub hist: &'a Histogram<u64>,
    /// Requests.
    pub count: u64,
    /// Failures.
    pub failures: u64,
    /// Response bytes.
    pub bytes: u64,
    /// Seconds the figures cover.
    pub seconds: f64,
}

impl<'a> RowFigures<'a> {
    /// The figures of a recorder cell, with `all` its every-request histogram.
    pub fn of(
        cell: &crate::results::cells::Cell,
        all: &'a Histogram<u64>,
        seconds: f64,
    ) -> RowFigures<'a> {
        RowFigures {
            hist: all,
            count: cell.count(),
            failures: cell.failures(),
            bytes: cell.bytes,
            seconds,
        }
    }

    /// (median, mean, min, max) latency in ms, and the mean response size: Locust's totals.
    fn totals(&self) -> (f64, f64, f64, f64, f64) {
        let h = self.hist;
        let size = if self.count > 0 {
            self.bytes as f64 / self.count as f64
        } else {
            0.0
        };
        if h.is_empty() {
            return (0.0, 0.0, 0.0, 0.0, size);
        }
        (
            ms(h.value_at_quantile(0.5)),
            h.mean() / 1000.0,
            ms(h.min()),
            ms(h.max()),
            size,
        )
    }

    fn cells(&self) -> String {
        let (median, avg, min, max, size) = self.totals();
        let secs = self.seconds.max(1e-9);
        format!(
            "{},{},{median:.3},{avg:.3},{min:.3},{max:.3},{size:.2},{:.3},{:.3}",
            self.count,
            self.failures,
            self.count as f64 / secs,
            self.failures as f64 / secs
        )
    }
}

/// One `stats.csv` row.
pub fn stats_row(method: &str, name: &str, f: &RowFigures) -> String {
    format!(
        "{},{},{},{}\n",
        field(method),
        field(name),
        f.cells(),
        percentile_cells(f.hist)
    )
}

/// `stats_history.csv` header.
pub fn history_header() -> String {
    format!(
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,{},Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size\n",
        percentile_names().replace('"', "")
    )
}

/// One `stats_history.csv` row: this second's rates and percentiles, totals so far.
pub fn history_row(
    unix: i64,
    users: usize,
    method: &str,
    name: &str,
    second: &RowFigures,
    total: &RowFigures,
) -> String {
    let (median, avg, min, max, size) = total.totals();
    format!(
        "{unix},{users},{},{},{:.3},{:.3},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.2}\n",
        field(method),
        field(name),
        second.count as f64 / second.seconds.max(1e-9),
        second.failures as f64 / second.seconds.max(1e-9),
        percentile_cells(second.hist),
        total.count,
        total.failures,
        median,
        avg,
        min,
        max,
        size,
    )
}

/// `failures.csv` header.
pub const FAILURES_HEADER: &str = "Method,Name,Error,Occurrences\n";

/// One `failures.csv` row; the error reads `class: message`.
pub fn failure_row(method: &str, name: &str, class: &str, message: &str, count: u64) -> String {
    format!(
        "{},{},{},{count}\n",
        field(method),
        field(name),
        field(&format!("{class}: {message}"))
    )
}

/// `timeline.csv` header: one row per UTC second per endpoint (and per task). `phase` is
/// `partial` (the run covers part of the second: counted in totals only), `warmup` or
/// `steady`; latencies are of successes, `failed_p95_ms` of failures. The last columns are
/// where the requests' time went (appended, so older readers read on): connections `opened`,
/// kept-alive connections found `closed` by the server, and the phases (connect and TLS only
/// for requests that opened a connection), empty when nothing was timed that second.
pub const TIMELINE_HEADER: &str =
    "unix,offset_s,covered_s,phase,method,name,kind,users,requests,failures,refused,p50_ms,p90_ms,p95_ms,p99_ms,max_ms,mean_ms,failed_p95_ms,corrected_p95_ms,opened,closed,connect_p95_ms,tls_p95_ms,wait_p50_ms,wait_p95_ms,receive_p95_ms\n";

/// One row of `timeline.csv`.
pub struct TimelineRow<'a> {
    /// The UTC second.
    pub unix: i64,
    /// Its start relative to the run's start, s (negative for the partial first second).
    pub offset: f64,
    /// How much of it the run covers, s.
    pub covered: f64,
    /// `partial`, `warmup` or `steady`.
    pub phase: &'a str,
    /// Method (`TASK` for a task).
    pub method: &'a str,
    /// Name.
    pub name: &'a str,
    /// Request or task.
    pub kind: crate::results::cells::Kind,
    /// Users running.
    pub users: usize,
    /// What the second held.
    pub cell: &'a crate::results::cells::Cell,
}

/// A timeline row.
pub fn timeline_row(r: &TimelineRow) -> String {
    let h = &r.cell.ok;
    let q = |q: f64| {
        if h.is_empty() {
            String::new()
        } else {
            ms3(h.value_at_quantile(q))
        }
    };
    let mean = if h.is_empty() {
        String::new()
    } else {
        format!("{:.3}", h.mean() / 1000.0)
    };
    let failed = if r.cell.failed.is_empty() {
        String::new()
    } else {
        ms3(r.cell.failed.value_at_quantile(0.95))
    };
    let corr = r
        .cell
        .corrected
        .as_ref()
        .filter(|c| !c.is_empty())
        .map(|c| ms3(c.value_at_quantile(0.95)))
        .unwrap_or_default();
    let kind = match r.kind {
        crate::results::cells::Kind::Request => "request",
        crate::results::cells::Kind::Task => "task",
    };
    format!(
        "{},{:.3},{:.3},{},{},{},{kind},{},{},{},{},{},{},{},{},{},{mean},{failed},{corr},{}\n",
        r.unix,
        r.offset,
        r.covered,
        r.phase,
        field(r.method),
        field(r.name),
        r.users,
        r.cell.count(),
        r.cell.failures(),
        r.cell.refused,
        q(0.5),
        q(0.9),
        q(0.95),
        q(0.99),
        q(1.0),
        phase_cells(r.cell.phases.as_deref()),
    )
}

/// The timeline's phase columns of a cell: `opened,closed,connect_p95_ms,tls_p95_ms,
/// wait_p50_ms,wait_p95_ms,receive_p95_ms`.
fn phase_cells(p: Option<&crate::results::cells::Phases>) -> String {
    let Some(p) = p else {
        return ",,,,,,".to_string();
    };
    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            String::new()
        } else {
            ms3(h.value_at_quantile(q))
        }
    };
    format!(
        "{},{},{},{},{},{},{}",
        p.opened,
        p.closed,
        q(&p.connect, 0.95),
        q(&p.tls, 0.95),
        q(&p.wait, 0.5),
        q(&p.wait, 0.95),
        q(&p.receive, 0.95)
    )
}

/// Header lines of an HdrHistogram interval log.
pub fn hlog_header(start_unix: f64) -> String {
    format!(
        "#[Histogram log format version 1.3]\n#[Values in microseconds; one interval per second per endpoint]\n#[StartTime: {start_unix:.3} (seconds since epoch)]\n#[BaseTime: {start_unix:.3} (seconds since epoch)]\n\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
    )
}

/// The interval log's tag of one phase of an endpoint: the endpoint's tag, then `;phase=NAME`.
pub fn hlog_phase_tag(endpoint_tag: &str, phase: &str) -> String {
    format!("{endpoint_tag};phase={phase}")
}

/// A tag usable in the interval log (no commas, spaces or newlines).
pub fn hlog_tag(method: &str, name: &str) -> String {
    format!("{method}:{name}")
        .chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// One interval line (V2 deflate encoding, max in ms as the Java tools show it).
pub fn hlog_line(tag: &str, start_offset_s: f64, length_s: f64, h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("histograms serialize into a Vec");
    format!(
        "Tag={tag},{start_offset_s:.3},{length_s:.3},{:.3},{}\n",
        ms(h.max()),
        base64::engine::general_purpose::STANDARD.encode(buf)
    )
}

/// One row of a per-second timeline as read back (the report, the dashboard and the
/// CloudWatch publisher read it).
#[derive(Debug, Clone)]
pub struct TimelineRecord {
    /// Seconds since the run's start (of the second's beginning).
    pub second: f64,
    /// The UTC second.
    pub unix: f64,
    /// Method and name.
    pub endpoint: String,
    /// How much of the second the run covers, s (under 1 for a partial second).
    pub covered: f64,
    /// `partial`, `warmup` or `steady`.
    pub phase: String,
    /// `request` or `task`.
    pub kind: String,
    /// Users running.
    pub users: f64,
    /// Requests.
    pub requests: f64,
    /// Failures.
    pub failures: f64,
    /// Median, ms.
    pub p50: Option<f64>,
    /// p95, ms.
    pub p95: Option<f64>,
    /// p99, ms.
    pub p99: Option<f64>,
    /// Connections this endpoint's requests opened (0 in files written before phases).
    pub opened: f64,
    /// p95 of the TCP handshakes of requests that opened a connection, ms.
    pub connect_p95: Option<f64>,
    /// p95 of their TLS handshakes, ms.
    pub tls_p95: Option<f64>,
    /// p95 of the wait (request written → first byte: the service's time), ms.
    pub wait_p95: Option<f64>,
}

/// Splits one CSV line (quoted fields allowed).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Reads `timeline.csv`.
pub fn read_timeline(path: &Path) -> Vec<TimelineRecord> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f = split_csv(l);
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            Some(TimelineRecord {
                unix: num(0)?,
                second: num(1)?,
                covered: num(2).unwrap_or(1.0),
                phase: f.get(3)?.clone(),
                endpoint: format!("{} {}", f.get(4)?, f.get(5)?),
                kind: f.get(6)?.clone(),
                users: num(7).unwrap_or(0.0),
                requests: num(8)?,
                failures: num(9)?,
                p50: num(11),
                p95: num(13),
                p99: num(14),
                opened: num(19).unwrap_or(0.0),
                connect_p95: num(21),
                tls_p95: num(22),
                wait_p95: num(24),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn hlog_round_trips_through_the_reference_parser() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in [100u64, 200, 300, 40_000] {
            h.record(v).unwrap();
        }
        let log = format!(
            "{}{}",
            hlog_header(1000.0),
            hlog_line(&hlog_tag("POST", "/a b,c"), 1.0, 1.0, &h)
        );
        let entries: Vec<_> = IntervalLogIterator::new(log.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let hist = entries
            .iter()
            .find_map(|e| match e {
                LogEntry::Interval(i) => Some(i),
                _ => None,
            })
            .expect("one interval");
        assert_eq!(hist.tag().unwrap().as_str(), "POST:/a_b_c");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(hist.encoded_histogram())
            .unwrap();
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
    }

    #[test]
    fn locust_columns() {
        assert!(stats_header()
            .starts_with("Type,Name,Request Count,Failure Count,Median Response Time"));
        assert!(history_header().contains(",95%,"));
        assert_eq!(field("a,b"), "\"a,b\"");
    }
}
