//! The control socket of a running role: a Unix stream socket, one request line in, one JSON
//! line out, then the connection closes.
//!
//! Requests: `status`, and for the master `drain NAME`, `deactivate NAME`, `activate NAME`.
//! Replies: `{"ok":true,"status":{…}}` or `{"ok":false,"error":"…"}`. A line protocol keeps it
//! usable from a shell (`echo status | socat - UNIX:master.sock`) as well as from `l2tpkit ctl`
//! and the TUI. The socket is a path, not an abstract name, so it reaches across the lab's
//! network namespaces.
//!
//! The accept loop runs as its own task and hands each request to the role's loop over a
//! channel: the role answers between packets, so it never needs a lock around its state.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Longest request line accepted; anything longer is refused unread.
const MAX_REQUEST: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control socket {path}: another process is serving it")]
    InUse { path: PathBuf },
    #[error("control socket {path}: exists and is not a socket; not replacing it")]
    NotSocket { path: PathBuf },
    #[error("control socket {path}: path longer than the 107 bytes a Unix socket allows")]
    PathTooLong { path: PathBuf },
    #[error("control socket {path}: the reply is not JSON: {reply:?}")]
    BadReply { path: PathBuf, reply: String },
    #[error("{0}")]
    Refused(String),
}

/// One request, parsed. The master answers `status`, `drain`, `deactivate` and `activate`;
/// the NAT `status`; a LAC (`lac --control`) `status`, `report`, `rate`, `pause`, `resume`
/// and the two `terminate-…`.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Status,
    Drain(String),
    Deactivate(String),
    Activate(String),
    /// The LAC's full report as of now, the shape of its final JSON.
    Report,
    /// Tunnel setups per second from now (0: unpaced).
    Rate(f64),
    Pause,
    Resume,
    /// Close our tunnel `tunnel` (its Assigned Tunnel ID on our side) with a StopCCN carrying
    /// `result` (default 1, general request to clear the control connection, RFC 2661 §4.4.2).
    TerminateTunnel {
        tunnel: u16,
        result: u16,
    },
    /// Close session `session` of our tunnel `tunnel` with a CDN carrying `result` (default 3,
    /// administrative disconnect).
    TerminateSession {
        tunnel: u16,
        session: u16,
        result: u16,
    },
}

/// The highest `rate` a LAC takes, as its `--rate` flag.
pub const MAX_RATE: f64 = 1_000_000.0;

impl core::fmt::Display for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Request::Status => f.write_str("status"),
            Request::Drain(name) => write!(f, "drain {name}"),
            Request::Deactivate(name) => write!(f, "deactivate {name}"),
            Request::Activate(name) => write!(f, "activate {name}"),
            Request::Report => f.write_str("report"),
            Request::Rate(rate) => write!(f, "rate {rate}"),
            Request::Pause => f.write_str("pause"),
            Request::Resume => f.write_str("resume"),
            Request::TerminateTunnel { tunnel, result } => {
                write!(f, "terminate-tunnel {tunnel} {result}")
            }
            Request::TerminateSession {
                tunnel,
                session,
                result,
            } => write!(f, "terminate-session {tunnel} {session} {result}"),
        }
    }
}

const VERBS: &str = "status, drain NAME, deactivate NAME, activate NAME (master); report, \
                     rate R, pause, resume, terminate-tunnel TUNNEL [RESULT], \
                     terminate-session TUNNEL SESSION [RESULT] (LAC)";

impl Request {
    /// Parses one line; the error names what was wrong.
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (&verb, args) = words.split_first().ok_or("empty request")?;
        let arity = |min: usize, max: usize, what: &str| {
            if args.len() < min {
                Err(format!("{verb}: expected {what}"))
            } else if args.len() > max {
                Err(format!("{verb}: too many words (expected {what})"))
            } else {
                Ok(())
            }
        };
        let id = |i: usize, what: &str| -> Result<u16, String> {
            let word = args.get(i).copied().unwrap_or_default();
            match word.parse::<u16>() {
                Ok(id) if id > 0 => Ok(id),
                _ => Err(format!("{verb}: {what} {word:?}: expected 1 to 65535")),
            }
        };
        let result = |i: usize, default: u16| -> Result<u16, String> {
            match args.get(i) {
                None => Ok(default),
                Some(_) => id(i, "result code"),
            }
        };
        match verb {
            "status" | "report" | "pause" | "resume" => {
                if !args.is_empty() {
                    return Err(format!("{verb} takes no argument"));
                }
                Ok(match verb {
                    "status" => Request::Status,
                    "report" => Request::Report,
                    "pause" => Request::Pause,
                    _ => Request::Resume,
                })
            }
            "drain" | "deactivate" | "activate" => {
                arity(1, 1, "an endpoint name")?;
                let name = args[0].to_string();
                Ok(match verb {
                    "drain" => Request::Drain(name),
                    "deactivate" => Request::Deactivate(name),
                    _ => Request::Activate(name),
                })
            }
            "rate" => {
                arity(1, 1, "setups per second")?;
                match args[0].parse::<f64>() {
                    Ok(rate) if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) => {
                        Ok(Request::Rate(rate))
                    }
                    _ => Err(format!(
                        "rate {:?}: expected 0 (unpaced) to {MAX_RATE} setups per second",
                        args[0]
                    )),
                }
            }
            "terminate-tunnel" => {
                arity(1, 2, "TUNNEL [RESULT]")?;
                Ok(Request::TerminateTunnel {
                    tunnel: id(0, "tunnel")?,
                    result: result(1, 1)?,
                })
            }
            "terminate-session" => {
                arity(2, 3, "TUNNEL SESSION [RESULT]")?;
                Ok(Request::TerminateSession {
                    tunnel: id(0, "tunnel")?,
                    session: id(1, "session")?,
                    result: result(2, 3)?,
                })
            }
            other => Err(format!("unknown request {other:?}: expected {VERBS}")),
        }
    }
}

/// A request waiting for the role's answer (a JSON line, from [`ok`] or [`refused`]).
pub struct Pending {
    pub request: Result<Request, String>,
    pub reply: oneshot::Sender<String>,
}

/// The reply to a request that succeeded, with the role's status after it.
pub fn ok<T: Serialize>(status: &T) -> String {
    #[derive(Serialize)]
    struct Ok<'a, T> {
        ok: bool,
        status: &'a T,
    }
    serde_json::to_string(&Ok { ok: true, status }).unwrap_or_default()
}

pub fn refused(error: &str) -> String {
    serde_json::json!({ "ok": false, "error": error }).to_string()
}

/// The listening side; the socket file goes when this is dropped.
pub struct ControlServer {
    path: PathBuf,
    requests: mpsc::Receiver<Pending>,
    task: tokio::task::JoinHandle<()>,
}

fn check_len(path: &Path) -> Result<(), ControlError> {
    if path.as_os_str().len() > 107 {
        return Err(ControlError::PathTooLong {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

impl ControlServer {
    /// Binds `path`. A leftover file that nobody serves is replaced; a live socket is not.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        check_len(path)?;
        let io_err = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            // Never delete a file that is not a socket: the path may be a typo.
            if !meta.file_type().is_socket() {
                return Err(ControlError::NotSocket {
                    path: path.to_path_buf(),
                });
            }
            if StdUnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io_err)?;
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        let (tx, requests) = mpsc::channel(16);
        let task = tokio::spawn(accept_loop(listener, tx));
        Ok(ControlServer {
            path: path.to_path_buf(),
            requests,
            task,
        })
    }

    /// The next request; pending forever once the accept loop is gone.
    pub async fn next(&mut self) -> Pending {
        match self.requests.recv().await {
            Some(pending) => pending,
            None => std::future::pending().await,
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `next()` of an optional server, for a `select!` arm.
pub async fn next(server: Option<&mut ControlServer>) -> Pending {
    match server {
        Some(server) => server.next().await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(listener: UnixListener, tx: mpsc::Sender<Pending>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            // A client that never finishes its line does not hold the task forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), serve_one(stream, tx)).await;
        });
    }
}

async fn serve_one(stream: UnixStream, tx: mpsc::Sender<Pending>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    if line.is_empty() {
        // Connected and left without a word (the "is anyone serving?" probe of `bind`).
        return Ok(());
    }
    let request = if line.ends_with('\n') || line.len() < MAX_REQUEST as usize {
        Request::parse(line.trim())
    } else {
        Err(format!("request longer than {MAX_REQUEST} bytes"))
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let reply = if tx
        .send(Pending {
            request,
            reply: reply_tx,
        })
        .await
        .is_ok()
    {
        reply_rx
            .await
            .unwrap_or_else(|_| refused("the role is shutting down"))
    } else {
        refused("the role is shutting down")
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Client side: sends one request line and returns the `status` of an `ok` reply as JSON.
/// A refusal comes back as `ControlError::Refused` with the role's words.
pub fn request(path: &Path, line: &str) -> Result<serde_json::Value, ControlError> {
    check_len(path)?;
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = StdUnixStream::connect(path).map_err(io_err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io_err)?;
    stream
        .write_all(format!("{}\n", line.trim()).as_bytes())
        .map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(io::Read::take(stream, 16 << 20))
        .read_line(&mut reply)
        .map_err(io_err)?;
    let bad = || ControlError::BadReply {
        path: path.to_path_buf(),
        reply: reply.chars().take(200).collect(),
    };
    let mut value: serde_json::Value = serde_json::from_str(&reply).map_err(|_| bad())?;
    match value.get("ok").and_then(serde_json::Value::as_bool) {
        Some(true) => Ok(value
            .get_mut("status")
            .map(serde_json::Value::take)
            .unwrap_or_default()),
        Some(false) => Err(ControlError::Refused(
            value
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("refused")
                .to_string(),
        )),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_errors_name_the_problem() {
        assert_eq!(Request::parse("status"), Ok(Request::Status));
        assert_eq!(
            Request::parse(" drain te2 "),
            Ok(Request::Drain("te2".into()))
        );
        assert_eq!(
            Request::parse("activate te1"),
            Ok(Request::Activate("te1".into()))
        );
        assert!(Request::parse("drain")
            .unwrap_err()
            .contains("endpoint name"));
        assert!(Request::parse("drain a b")
            .unwrap_err()
            .contains("too many"));
        assert!(Request::parse("status x").is_err());
        assert_eq!(Request::parse("report"), Ok(Request::Report));
        assert_eq!(Request::parse("rate 12.5"), Ok(Request::Rate(12.5)));
        assert!(Request::parse("rate -1").unwrap_err().contains("\"-1\""));
        assert!(Request::parse("rate NaN").is_err());
        assert!(Request::parse("rate")
            .unwrap_err()
            .contains("setups per second"));
        assert_eq!(Request::parse("pause"), Ok(Request::Pause));
        assert_eq!(Request::parse("resume"), Ok(Request::Resume));
        assert_eq!(
            Request::parse("terminate-tunnel 7"),
            Ok(Request::TerminateTunnel {
                tunnel: 7,
                result: 1
            })
        );
        assert_eq!(
            Request::parse("terminate-session 7 9 2"),
            Ok(Request::TerminateSession {
                tunnel: 7,
                session: 9,
                result: 2
            })
        );
        assert!(Request::parse("terminate-tunnel 0")
            .unwrap_err()
            .contains("tunnel \"0\""));
        assert!(Request::parse("terminate-session 7")
            .unwrap_err()
            .contains("TUNNEL SESSION"));
        assert!(Request::parse("terminate-session 7 9 x")
            .unwrap_err()
            .contains("result code"));
        for line in ["report", "rate 3", "terminate-session 1 2 3", "drain te1"] {
            let parsed = Request::parse(line).unwrap();
            assert_eq!(Request::parse(&parsed.to_string()), Ok(parsed), "{line}");
        }
        assert!(Request::parse("reboot").unwrap_err().contains("\"reboot\""));
        assert!(Request::parse("").is_err());
    }

    #[tokio::test]
    async fn a_request_round_trips_and_the_socket_goes_with_the_server() {
        let dir = std::env::temp_dir().join(format!("l2tpkit-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        // A second server on a live socket is refused, not allowed to steal it.
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlError::InUse { .. })
        ));
        let client_path = path.clone();
        let client = tokio::task::spawn_blocking(move || {
            let good = request(&client_path, "drain te2");
            let bad = request(&client_path, "drain");
            (good, bad)
        });
        for _ in 0..2 {
            let pending = server.next().await;
            let reply = match pending.request {
                Ok(Request::Drain(name)) => ok(&serde_json::json!({ "drained": name })),
                Ok(other) => refused(&format!("unexpected {other:?}")),
                Err(e) => refused(&e),
            };
            pending.reply.send(reply).unwrap();
        }
        let (good, bad) = client.await.unwrap();
        assert_eq!(good.unwrap()["drained"], "te2");
        match bad {
            Err(ControlError::Refused(e)) => assert!(e.contains("endpoint name"), "{e}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        drop(server);
        assert!(!path.exists());
        // A stale socket (nobody serving) is replaced; a plain file is never touched.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = ControlServer::bind(&path).unwrap();
        drop(server);
        std::fs::write(&path, b"keep").unwrap();
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlError::NotSocket { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
