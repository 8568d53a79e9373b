//! A real Prometheus (Debian package `prometheus`) scraping `--metrics` of our LAC and of the
//! master and endpoints of a loopback cluster (see `cluster_loopback`): after the run its
//! HTTP query API returns the tunnels the LAC's report counts, the master's dispatch per
//! endpoint, and each endpoint's tunnels.
//! Needs root for the master's raw socket, like the cluster test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use l2tpkit::lac::{execute as run_lac, LacArgs, PppLevel};
use l2tpkit_tests::require;

use super::cluster_loopback::{one_cluster, root, start_with};

const PROMETHEUS: &str = "127.78.3.1:9090";
const LAC_METRICS: &str = "127.78.2.1:9464";
const MASTER_METRICS: &str = "127.78.1.1:9464";
const ENDPOINT_METRICS: [&str; 3] = ["127.78.1.11:9464", "127.78.1.12:9464", "127.78.1.13:9464"];

/// Prometheus, killed and waited for when dropped; its directory removed after a pass.
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "test failed: Prometheus's files kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One HTTP GET on loopback: the status line's code and the body.
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let addr: SocketAddr = addr.parse().expect("an address");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn start_prometheus(dir: &Path) -> Prometheus {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  \
             - job_name: lac\n    static_configs:\n      - targets: ['{LAC_METRICS}']\n  \
             - job_name: master\n    static_configs:\n      - targets: ['{MASTER_METRICS}']\n  \
             - job_name: endpoint\n    static_configs:\n      - targets: ['{}']\n",
            ENDPOINT_METRICS.join("', '")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus {
        child,
        dir: dir.to_path_buf(),
    };
    // All five targets taken on: its discovery hands new targets to the scrapers up to 5 s
    // after the start, and a LAC run is shorter than that.
    await_targets(&loopback, 5, &dir.join("prometheus.log"));
    prometheus
}

/// Where Prometheus's HTTP API answers a path: on loopback, or from inside a namespace.
type Api<'a> = &'a dyn Fn(&str) -> (u16, String);

/// On loopback, at [`PROMETHEUS`].
fn loopback(path: &str) -> (u16, String) {
    get(PROMETHEUS, path).unwrap_or((0, String::new()))
}

/// Waits until Prometheus has taken on `n` scrape targets (ready, its configuration read);
/// fails after 30 s, pointing at its log.
fn await_targets(api: Api<'_>, n: usize, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = api("/api/v1/targets");
        let taken = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["data"]["activeTargets"].as_array().map(Vec::len))
            .unwrap_or(0);
        if code == 200 && taken == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus took on {taken} of {n} targets in 30 s; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The instant vector of `promql` as (labels, value) pairs.
fn query(api: Api<'_>, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (code, body) = api(&format!("/api/v1/query?query={encoded}"));
    assert_eq!(code, 200, "{promql}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let value = r["value"][1]
                .as_str()
                .unwrap_or("nan")
                .parse()
                .unwrap_or(f64::NAN);
            (r["metric"].clone(), value)
        })
        .collect()
}

/// Polls `query` until `done` holds (Prometheus scrapes each second); fails after 15 s.
fn await_query(
    api: Api<'_>,
    promql: &str,
    done: impl Fn(&[(serde_json::Value, f64)]) -> bool,
) -> Vec<(serde_json::Value, f64)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let result = query(api, promql);
        if done(&result) {
            return result;
        }
        assert!(Instant::now() < deadline, "{promql}: still {result:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn prometheus_scrapes_the_lac_and_the_master() {
    if !root() || !require("prometheus") {
        return;
    }
    let _alone = one_cluster();
    let dir = std::env::temp_dir().join(format!("l2tpkit-prometheus-{}", std::process::id()));
    let _prometheus = start_prometheus(&dir);
    let cluster = start_with([127, 78, 1], 10.0, Some(MASTER_METRICS.parse().unwrap()));
    let args = LacArgs {
        target: "127.78.1.1:1701".parse().unwrap(),
        bind: "127.78.2.1:0".parse().unwrap(),
        tunnels: 60,
        sessions_per_tunnel: 1,
        hold: Duration::from_secs(4),
        echo_rate: 0.0,
        setup_timeout: Some(Duration::from_secs(5)),
        any_source: true,
        initiators: 6,
        ppp: PppLevel::Off,
        metrics: Some(LAC_METRICS.parse().unwrap()),
        ..LacArgs::default()
    };
    let (report, _) = run_lac(&args).expect("lac");
    assert!(report.success(), "{report}");
    // Stale once the LAC is gone: the last value over the run is what it reported.
    let established = await_query(
        &loopback,
        "max_over_time(l2tpkit_tunnels_established_total[5m])",
        |r| {
            r.first()
                .is_some_and(|(_, v)| *v == report.tunnels_established as f64)
        },
    );
    assert_eq!(established.len(), 1, "{established:?}");
    let histogram = await_query(
        &loopback,
        "max_over_time(l2tpkit_setup_latency_seconds_count{phase=\"sccrq_to_sccrp\"}[5m])",
        |r| {
            r.first()
                .is_some_and(|(_, v)| *v == report.sccrq_to_sccrp.count as f64)
        },
    );
    assert_eq!(histogram.len(), 1);

    let master = cluster.master.join().expect("the master");
    for e in &master.endpoints {
        let promql = format!(
            "max_over_time(l2tpkit_master_dispatched_total{{endpoint=\"{}\"}}[5m])",
            e.name
        );
        await_query(&loopback, &promql, |r| {
            r.first()
                .is_some_and(|(_, v)| *v == e.dispatched_total as f64)
        });
    }
    let dispatched: u64 = master.endpoints.iter().map(|e| e.dispatched_total).sum();
    assert_eq!(dispatched, 60, "{:?}", master.endpoints);
    for (endpoint, (e, addr)) in cluster
        .endpoints
        .into_iter()
        .zip(master.endpoints.iter().zip(ENDPOINT_METRICS))
    {
        let stats = endpoint.join().expect("an endpoint");
        assert_eq!(stats.tunnels_established, e.dispatched_total);
        let promql = format!(
            "max_over_time(l2tpkit_endpoint_tunnels_established_total{{instance=\"{addr}\"}}[5m])"
        );
        await_query(&loopback, &promql, |r| {
            r.first()
                .is_some_and(|(_, v)| *v == stats.tunnels_established as f64)
        });
    }
}

/// `f` on a thread that has entered `namespace`.
fn in_netns<T: Send + 'static>(namespace: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let namespace = namespace.to_string();
    std::thread::spawn(move || {
        l2tpkit::lab::sys::enter_netns(&namespace).expect("enter the namespace");
        f()
    })
    .join()
    .expect("the thread in the namespace")
}

/// The lab's roles and a LAC in it (`lab up --metrics`), scraped by Prometheus started in the
/// master's namespace with the lab's own `prometheus.yml`: after the run its query API
/// returns the LAC's tunnels and the master's dispatch per endpoint as the run counted them.
#[test]
fn prometheus_scrapes_a_lab_with_the_scrape_file_it_wrote() {
    use l2tpkit::lab::{Lab, LabSpec, NodeKind, Topology};
    if !root() || !require("prometheus") {
        return;
    }
    let lab = Lab::up(&LabSpec {
        captures: false,
        metrics: true,
        ..LabSpec::new(Topology::Fig2, 3)
    })
    .expect("lab up --metrics");
    let run = lab.run_dir().to_path_buf();
    let cm = lab.namespace(NodeKind::Master).unwrap().to_string();
    let ti = lab.namespace(NodeKind::Initiator).unwrap().to_string();
    let web = "198.19.0.1:9090";
    let log = std::fs::File::create(run.join("prometheus.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &cm, "prometheus"])
        .arg(format!(
            "--config.file={}",
            run.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            run.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus in the master's namespace");
    // Its files go with the lab's run dir; the process by PID when this ends.
    let _prometheus = Prometheus {
        child,
        dir: run.join("prometheus-data"),
    };
    let get_cm =
        |path: String| in_netns(&cm, move || get(web, &path).unwrap_or((0, String::new())));
    let api = |path: &str| get_cm(path.to_string());
    // Master, NAT, three endpoints and the LAC to come: six targets taken on.
    await_targets(&api, 6, &run.join("prometheus.log"));
    let args = LacArgs {
        target: "198.18.0.1:1701".parse().unwrap(),
        bind: "198.18.1.1:0".parse().unwrap(),
        tunnels: 30,
        sessions_per_tunnel: 1,
        hold: Duration::from_secs(4),
        echo_rate: 0.0,
        setup_timeout: Some(Duration::from_secs(10)),
        any_source: true,
        ppp: PppLevel::Off,
        metrics: Some("198.18.1.1:9464".parse().unwrap()),
        ..LacArgs::default()
    };
    let report = in_netns(&ti, move || run_lac(&args).expect("lac").0);
    assert!(report.success(), "{report}");
    let until = |promql: &str, want: f64| {
        await_query(&api, promql, |r| r.first().is_some_and(|(_, v)| *v == want));
    };
    until(
        "max_over_time(l2tpkit_tunnels_established_total[5m])",
        report.tunnels_established as f64,
    );
    let status = reference::control::request(&run.join("master.sock"), "status").unwrap();
    let endpoints = status["endpoints"].as_array().unwrap().clone();
    assert_eq!(endpoints.len(), 3);
    for e in &endpoints {
        let name = e["name"].as_str().unwrap();
        let want = e["dispatched_total"].as_f64().unwrap();
        until(
            &format!("max_over_time(l2tpkit_master_dispatched_total{{endpoint=\"{name}\"}}[5m])"),
            want,
        );
    }
    until(
        "max_over_time(l2tpkit_nat_table_entries_created_total[5m])",
        report.tunnels_established as f64,
    );
    drop(_prometheus);
    lab.down().expect("lab down");
    let _ = std::fs::remove_dir_all(&run);
}
