//! `--metrics ADDR:PORT`: a role's figures for Prometheus, as OpenMetrics text on
//! `GET /metrics` (the `prometheus-client` crate encodes them).
//!
//! A role never does scrape work on its packet path: at its status interval (the LAC: each
//! second it closes) it turns its status into a [`MetricSet`] and hands it over; a scrape
//! encodes the last set handed over on the server's own thread, so even a role that runs on
//! one thread never spends a scrape's time there. Names take the `l2tpkit_` prefix; counters
//! get `_total`.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The latency buckets of the setup histograms, in seconds (1 ms to 30 s).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// One value of a family, for one label set.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    /// Counts per bucket, each of the values above the previous bound up to its own (the
    /// encoder makes them cumulative); the `+Inf` bucket, what lies above the last bound, is
    /// added from `count`. Sum and count of all values.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

/// A metric family: name (without the prefix or `_total`), help, type, its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub series: Vec<(Vec<(String, String)>, Value)>,
}

/// Everything a role reports at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSet {
    pub families: Vec<Family>,
}

impl MetricSet {
    pub fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.push(name, help, Vec::new(), Value::Counter(value));
    }

    /// Unlabelled counters, each `(name, help, value)`.
    pub fn counters(&mut self, list: &[(&'static str, &'static str, u64)]) {
        for &(name, help, value) in list {
            self.counter(name, help, value);
        }
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.push(name, help, Vec::new(), Value::Gauge(value));
    }

    /// One series of `name`, labelled; series of one family go together whatever the order
    /// they come in.
    pub fn push(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(String, String)>,
        value: Value,
    ) {
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(family) => family.series.push((labels, value)),
            None => self.families.push(Family {
                name,
                help,
                series: vec![(labels, value)],
            }),
        }
    }

    /// The OpenMetrics text of the set.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("l2tpkit");
        registry.register_collector(Box::new(Snapshot(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// A role's status as metrics.
pub trait Metered {
    fn metrics(&self) -> MetricSet;
}

/// Each `u64` field of a serializable struct of counters (drop reasons and the like) as
/// `(field, value)`.
pub fn fields(counts: &impl serde::Serialize) -> Vec<(String, u64)> {
    match serde_json::to_value(counts) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_u64().map(|v| (k, v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// A label pair.
pub fn label(key: &str, value: impl ToString) -> (String, String) {
    (key.to_string(), value.to_string())
}

#[derive(Debug)]
struct Snapshot(MetricSet);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.0.families {
            let Some((_, first)) = family.series.first() else {
                continue;
            };
            let kind = match first {
                Value::Counter(_) => MetricType::Counter,
                Value::Gauge(_) => MetricType::Gauge,
                Value::Histogram { .. } => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for (labels, value) in &family.series {
                if labels.is_empty() {
                    put(&mut metric, value)?;
                } else {
                    put(&mut metric.encode_family(labels)?, value)?;
                }
            }
        }
        Ok(())
    }
}

fn put(series: &mut MetricEncoder<'_>, value: &Value) -> Result<(), std::fmt::Error> {
    match value {
        Value::Counter(v) => series.encode_counter::<NoLabelSet, _, u64>(v, None),
        Value::Gauge(v) => series.encode_gauge(v),
        Value::Histogram {
            sum,
            count,
            buckets,
        } => {
            let mut all = buckets.clone();
            let below: u64 = buckets.iter().map(|(_, n)| n).sum();
            // The encoder writes f64::MAX as "+Inf", as the crate's own histograms do.
            all.push((f64::MAX, count.saturating_sub(below)));
            series.encode_histogram::<NoLabelSet>(*sum, *count, &all, None)
        }
    }
}

/// Where a role hands its sets over; the server reads the last one.
pub type Shared = Arc<Mutex<MetricSet>>;

/// Hands `set` over (a poisoned lock is taken back: the set is whole either way).
pub fn publish(shared: &Shared, set: MetricSet) {
    *shared.lock().unwrap_or_else(|e| e.into_inner()) = set;
}

/// The `--metrics` listener, bound; [`MetricsServer::serve`] answers scrapes.
pub struct MetricsServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds at once, so an address in use fails the role at start, naming it.
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
        let bind = |source| MetricsError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        Ok(MetricsServer { listener, addr })
    }

    /// The bound address (the port, when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers scrapes from `shared` on a thread of its own until the [`Serving`] is dropped.
    pub fn serve(self, shared: Shared) -> Serving {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        tracing::warn!(%err, "no runtime for the metrics server; no scrapes");
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(self.listener, shared) => {}
                    }
                });
            });
        match thread {
            Ok(thread) => Serving {
                stop: Some(stop),
                thread: Some(thread),
            },
            Err(err) => {
                tracing::warn!(%err, "no thread for the metrics server; no scrapes");
                Serving {
                    stop: None,
                    thread: None,
                }
            }
        }
    }
}

/// The metrics server's thread; dropping this stops it and waits for it.
pub struct Serving {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: std::net::TcpListener, shared: Shared) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "metrics listener not registered; no scrapes");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let answer = answer(stream, &shared);
            let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
        });
    }
}

/// One HTTP/1.x request: `GET /metrics` gets the set, anything else a 404; then close.
async fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next(), words.next());
    let response = match (method, path) {
        (Some("GET"), Some(p)) if p == "/metrics" || p.starts_with("/metrics?") => {
            let body = shared.lock().unwrap_or_else(|e| e.into_inner()).render();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The histogram of latencies given in microseconds as `(value, how many)`, over
/// [`LATENCY_BUCKETS`] (seconds): per-bucket counts, the sum in seconds and the count.
pub fn latency_histogram(values: impl Iterator<Item = (u64, u64)>) -> Value {
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS.iter().map(|&b| (b, 0)).collect();
    let (mut sum, mut count) = (0.0, 0u64);
    for (micros, n) in values {
        let seconds = micros as f64 / 1e6;
        sum += seconds * n as f64;
        count = count.saturating_add(n);
        if let Some((_, c)) = buckets.iter_mut().find(|(bound, _)| seconds <= *bound) {
            *c = c.saturating_add(n);
        }
    }
    Value::Histogram {
        sum,
        count,
        buckets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetricSet {
        let mut set = MetricSet::default();
        set.counter("tunnels_established", "Tunnels established.", 3);
        set.gauge("tunnels_up", "Tunnels up now.", 2.0);
        for (name, n) in [("te1", 5), ("te2", 7)] {
            set.push(
                "dispatched",
                "SCCRQs dispatched per endpoint.",
                vec![label("endpoint", name)],
                Value::Counter(n),
            );
        }
        set.push(
            "setup_latency_seconds",
            "Setup latencies.",
            vec![label("phase", "sccrq_to_sccrp")],
            latency_histogram([(1_500, 2), (40_000, 1), (40_000_000, 1)].into_iter()),
        );
        set
    }

    #[test]
    fn renders_openmetrics_with_prefix_totals_labels_and_buckets() {
        let text = sample().render();
        assert!(
            text.contains("# TYPE l2tpkit_tunnels_established counter"),
            "{text}"
        );
        assert!(
            text.contains("l2tpkit_tunnels_established_total 3\n"),
            "{text}"
        );
        assert!(text.contains("l2tpkit_tunnels_up 2.0\n"), "{text}");
        assert!(
            text.contains("l2tpkit_dispatched_total{endpoint=\"te2\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "l2tpkit_setup_latency_seconds_bucket{le=\"0.002\",phase=\"sccrq_to_sccrp\"} 2"
            ) || text.contains(
                "l2tpkit_setup_latency_seconds_bucket{phase=\"sccrq_to_sccrp\",le=\"0.002\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("l2tpkit_setup_latency_seconds_count{phase=\"sccrq_to_sccrp\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(
                "l2tpkit_setup_latency_seconds_bucket{le=\"0.05\",phase=\"sccrq_to_sccrp\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "l2tpkit_setup_latency_seconds_bucket{le=\"+Inf\",phase=\"sccrq_to_sccrp\"} 4"
            ),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[tokio::test]
    async fn a_scrape_gets_the_last_set_and_other_paths_a_404() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let shared: Shared = Arc::default();
        publish(&shared, sample());
        let serving = server.serve(Arc::clone(&shared));
        let get = |path: &'static str| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            reply
        };
        let reply = get("/metrics").await;
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains(CONTENT_TYPE), "{reply}");
        assert!(
            reply.contains("l2tpkit_tunnels_established_total 3"),
            "{reply}"
        );
        assert!(get("/").await.starts_with("HTTP/1.1 404"));
        drop(serving);
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    #[test]
    fn an_address_in_use_is_named() {
        let first = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr();
        let err = MetricsServer::bind(addr).err().expect("in use");
        assert!(
            err.to_string().starts_with(&format!("--metrics {addr}: ")),
            "{err}"
        );
    }
}
