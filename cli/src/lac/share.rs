//! One agent's share of a sharded run (`lac --shard I/N`): the split of the whole run's flags
//! into this shard's block, where its files go (named by the shard), and what its JSON report
//! says of the run so that `l2tpkit merge` can check the shards belong together.

use std::path::PathBuf;
use std::time::Duration;

use probes::lac::{Shard, ShardFiles};

use super::{LacArgs, TUNNELS_PER_INITIATOR};

/// Where the run's files go: the flags' own paths, else --out-dir's, named by --shard.
#[derive(Debug, Clone, Default)]
pub(super) struct Outputs {
    pub(super) json: Option<PathBuf>,
    pub(super) csv: Option<PathBuf>,
    pub(super) endpoint_csv: Option<PathBuf>,
    pub(super) hdr_log: Option<PathBuf>,
    pub(super) pcap: Option<PathBuf>,
    pub(super) report: Option<PathBuf>,
    /// The control socket (several shards on one host each have their own).
    pub(super) control: Option<PathBuf>,
}

pub(super) fn outputs(args: &LacArgs) -> Outputs {
    let in_dir = |name: &str| args.out_dir.as_ref().map(|dir| dir.join(name));
    let named = |path: Option<PathBuf>| match args.shard {
        Some(shard) => path.map(|p| by_shard(&p, shard)),
        None => path,
    };
    Outputs {
        json: named(in_dir("lac.json")),
        csv: named(args.csv.clone().or_else(|| in_dir("lac.csv"))),
        endpoint_csv: named((args.endpoint_csv.clone()).or_else(|| in_dir("lac-endpoints.csv"))),
        hdr_log: named(args.hdr_log.clone().or_else(|| in_dir("lac.hlog"))),
        pcap: named(args.pcap.clone()),
        report: named(args.report.clone()),
        control: named(args.control.clone()),
    }
}

/// `lac.csv` as shard 2 of 4 writes it: `lac.shard-2-of-4.csv`.
pub fn by_shard(path: &std::path::Path, shard: Shard) -> PathBuf {
    let stem = (path.file_stem()).map_or_else(|| "lac".into(), |s| s.to_string_lossy());
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{}.{}", shard.label(), ext.to_string_lossy()),
        None => format!("{stem}.{}", shard.label()),
    };
    path.with_file_name(name)
}

/// The flags that define the whole run, as `merge` compares them between shards (no secret
/// or password among them).
pub(super) fn whole_run_flags(
    args: &LacArgs,
    setup_timeout: Duration,
    stop_at: Duration,
) -> Vec<(&'static str, String)> {
    let secs = |d: Duration| format!("{}", d.as_secs_f64());
    vec![
        ("--target", args.target.to_string()),
        ("--bind", args.bind.to_string()),
        ("--tunnels", args.tunnels.to_string()),
        (
            "--sessions-per-tunnel",
            args.sessions_per_tunnel.to_string(),
        ),
        ("--initiators", args.initiators.to_string()),
        ("--rate", args.rate.to_string()),
        ("--max-outstanding", args.max_outstanding.to_string()),
        ("--ramp", secs(args.ramp)),
        ("--hold", secs(args.hold)),
        ("--duration", secs(stop_at)),
        ("--setup-timeout", secs(setup_timeout)),
        ("--echo-rate", args.echo_rate.to_string()),
        ("--ppp", format!("{:?}", args.ppp).to_lowercase()),
        ("--auth", format!("{:?}", args.auth).to_lowercase()),
        ("--username", args.username.clone()),
        ("--ipv6", args.ipv6.to_string()),
        ("--dns", args.dns.to_string()),
        ("--traffic-rate", args.traffic_rate.to_string()),
        ("--max-retransmits", args.max_retransmits.to_string()),
        ("--hidden", args.hidden.to_string()),
        ("--any-source", args.any_source.to_string()),
        ("--stay-on-target", args.stay_on_target.to_string()),
    ]
}

/// This agent's share of the run (`--shard`; all of it without).
pub(super) struct Share {
    pub(super) tunnels: usize,
    pub(super) first_initiator: u32,
    pub(super) initiators: usize,
    pub(super) bind_port: u16,
    pub(super) rate: f64,
    pub(super) max_outstanding: usize,
    pub(super) ids: std::ops::RangeInclusive<u16>,
    /// The number of the share's first subscriber ({n} in --username).
    pub(super) first_number: u64,
}

pub(super) fn split(args: &LacArgs) -> anyhow::Result<Share> {
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let n = shard.count as usize;
    if args.tunnels < n {
        anyhow::bail!(
            "--tunnels {} is fewer than the {n} shards of --shard {shard}: every shard opens at \
             least one",
            args.tunnels
        );
    }
    if args.initiators > 1 && args.initiators < n {
        anyhow::bail!(
            "--initiators {} is fewer than the {n} shards of --shard {shard}: give each shard \
             one at least, or 1 (then every shard has one socket of its own)",
            args.initiators
        );
    }
    if args.max_outstanding < n {
        anyhow::bail!(
            "--max-outstanding {} is fewer than the {n} shards of --shard {shard}: it is split \
             among them",
            args.max_outstanding
        );
    }
    let tunnels = shard.block(args.tunnels as u64);
    let (first_initiator, initiators) = if args.initiators == 1 {
        (0, 1)
    } else {
        let block = shard.block(args.initiators as u64);
        (block.start, block.end - block.start)
    };
    // One initiator per shard on one address: each its own port.
    let bind_port = match args.bind.port() {
        0 => 0,
        port if args.initiators == 1 => {
            u16::try_from(u32::from(port) + shard.index).map_err(|_| {
                anyhow::anyhow!(
                    "--bind port {port} + shard {} runs past 65535 (--shard {shard}: each shard \
                     takes the port after the one before)",
                    shard.index
                )
            })?
        }
        port => port,
    };
    let share = (tunnels.end - tunnels.start) as usize;
    let initiators = initiators as usize;
    let ids = shard.id_block();
    let room = (ids.len()).min(TUNNELS_PER_INITIATOR);
    let most = share.div_ceil(initiators);
    if most > room {
        anyhow::bail!(
            "--shard {shard}: an initiator of this shard would open {most} tunnels, but the \
             shard's Tunnel ID block ({}-{}) holds {room}: give more --initiators or fewer \
             shards",
            ids.start(),
            ids.end()
        );
    }
    if args.sessions_per_tunnel > ids.len() {
        anyhow::bail!(
            "--sessions-per-tunnel {}: the Session ID block of --shard {shard} ({}-{}) holds {}",
            args.sessions_per_tunnel,
            ids.start(),
            ids.end(),
            ids.len()
        );
    }
    Ok(Share {
        tunnels: share,
        first_initiator: first_initiator as u32,
        initiators,
        bind_port,
        // In proportion to the tunnels: every shard ends its setups together.
        rate: args.rate * share as f64 / args.tunnels as f64,
        max_outstanding: shard.share(args.max_outstanding as u64) as usize,
        ids,
        first_number: tunnels
            .start
            .saturating_mul(args.sessions_per_tunnel as u64)
            .saturating_add(1),
    })
}

/// The shard's files as its JSON report names them: by file name when they lie beside it.
pub(super) fn shard_files(outputs: &Outputs) -> ShardFiles {
    let json_dir = outputs.json.as_ref().and_then(|p| p.parent());
    let name = |path: &Option<PathBuf>| {
        path.as_ref().map(|p| match (p.parent(), p.file_name()) {
            (Some(dir), Some(file)) if Some(dir) == json_dir => file.to_string_lossy().into_owned(),
            _ => p.display().to_string(),
        })
    };
    ShardFiles {
        csv: name(&outputs.csv),
        endpoint_csv: name(&outputs.endpoint_csv),
        hdr_log: name(&outputs.hdr_log),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::path::PathBuf;

    use super::super::check;
    use super::*;

    fn sharded(shard: &str, tunnels: usize, initiators: usize) -> LacArgs {
        LacArgs {
            target: "127.0.0.1:1701".parse().unwrap(),
            bind: "127.0.1.1:0".parse().unwrap(),
            tunnels,
            initiators,
            sessions_per_tunnel: 3,
            rate: 1000.0,
            max_outstanding: 10,
            shard: Some(shard.parse().unwrap()),
            ..LacArgs::default()
        }
    }

    #[test]
    fn four_shards_split_the_run_into_disjoint_blocks_that_add_up_to_it() {
        let shares: Vec<Share> = (0..4)
            .map(|i| split(&sharded(&format!("{i}/4"), 1002, 8)).unwrap())
            .collect();
        let tunnels: Vec<usize> = shares.iter().map(|s| s.tunnels).collect();
        assert_eq!(tunnels, [251, 251, 250, 250]);
        let initiators: Vec<(u32, usize)> = (shares.iter())
            .map(|s| (s.first_initiator, s.initiators))
            .collect();
        assert_eq!(initiators, [(0, 2), (2, 2), (4, 2), (6, 2)]);
        let rate: f64 = shares.iter().map(|s| s.rate).sum();
        assert!((rate - 1000.0).abs() < 1e-9, "{rate}");
        let outstanding: usize = shares.iter().map(|s| s.max_outstanding).sum();
        assert_eq!(outstanding, 10);
        // Subscribers numbered on: shard 1's first is the one after shard 0's 251 × 3.
        let firsts: Vec<u64> = shares.iter().map(|s| s.first_number).collect();
        assert_eq!(firsts, [1, 754, 1507, 2257]);
        for pair in shares.windows(2) {
            assert!(pair[0].ids.end() < pair[1].ids.start(), "{:?}", pair[0].ids);
        }
        // Unsharded: everything, as before.
        let whole = split(&LacArgs {
            shard: None,
            ..sharded("0/1", 1002, 8)
        })
        .unwrap();
        assert_eq!(
            (whole.tunnels, whole.initiators, whole.ids),
            (1002, 8, 1..=65535)
        );
    }

    #[test]
    fn one_initiator_per_shard_takes_the_port_after_the_one_before() {
        let args = |shard: &str, port: u16| LacArgs {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            ..sharded(shard, 40, 1)
        };
        assert_eq!(split(&args("3/4", 1701)).unwrap().bind_port, 1704);
        assert_eq!(split(&args("3/4", 0)).unwrap().bind_port, 0);
        let err = split(&args("3/4", 65_534)).err().unwrap().to_string();
        assert!(err.contains("--bind port 65534"), "{err}");
    }

    #[test]
    fn a_shard_that_cannot_be_carried_is_refused_naming_the_flag() {
        for (args, says) in [
            (
                sharded("0/4", 3, 1),
                "--tunnels 3 is fewer than the 4 shards",
            ),
            (
                sharded("0/4", 40, 2),
                "--initiators 2 is fewer than the 4 shards",
            ),
            (
                LacArgs {
                    max_outstanding: 3,
                    ..sharded("0/4", 40, 4)
                },
                "--max-outstanding 3",
            ),
            // 64 IDs per shard of 1024: 100 tunnels from one initiator do not fit.
            (
                LacArgs {
                    max_outstanding: 2048,
                    ..sharded("0/1024", 102_400, 1024)
                },
                "Tunnel ID block",
            ),
            (
                LacArgs {
                    sessions_per_tunnel: 100,
                    max_outstanding: 2048,
                    ..sharded("5/1024", 2048, 1024)
                },
                "--sessions-per-tunnel 100",
            ),
        ] {
            let err = check(&args).err().expect(says).to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn output_files_are_named_by_the_shard() {
        let shard = "2/4".parse().unwrap();
        assert_eq!(
            by_shard(std::path::Path::new("/r/lac.csv"), shard),
            PathBuf::from("/r/lac.shard-2-of-4.csv")
        );
        assert_eq!(
            by_shard(std::path::Path::new("out"), shard),
            PathBuf::from("out.shard-2-of-4")
        );
        let args = LacArgs {
            out_dir: Some("/r".into()),
            csv: Some("/elsewhere/mine.csv".into()),
            ..sharded("2/4", 40, 4)
        };
        let out = outputs(&args);
        assert_eq!(out.json, Some("/r/lac.shard-2-of-4.json".into()));
        assert_eq!(out.csv, Some("/elsewhere/mine.shard-2-of-4.csv".into()));
        assert_eq!(out.hdr_log, Some("/r/lac.shard-2-of-4.hlog".into()));
        let files = shard_files(&out);
        assert_eq!(files.hdr_log.as_deref(), Some("lac.shard-2-of-4.hlog"));
        assert_eq!(
            files.csv.as_deref(),
            Some("/elsewhere/mine.shard-2-of-4.csv")
        );
    }
}
