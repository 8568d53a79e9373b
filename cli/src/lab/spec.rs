//! What a lab is to be ([`LabSpec`]) and what must be on the machine before one is built.

use std::path::PathBuf;

use anyhow::Context;

use super::netem::Netem;
use super::plan::Topology;
use super::sys;
use super::{l2tpns, xl2tpd};

/// What answers as the LNS in every endpoint namespace of a lab. The master and the NAT are
/// always ours.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// `l2tpkit endpoint`: the reference LNS, which reports its load itself and may take the
    /// master over (FIG 4).
    #[default]
    L2tpkit,
    /// An unmodified xl2tpd (its pppd a stand-in that echoes every frame), with `l2tpkit agent`
    /// beside it reporting its load to the master.
    Xl2tpd,
    /// An unmodified l2tpns, which runs PPP itself (CHAP against a FreeRADIUS beside it, IPCP
    /// from its slice of the pool), with `l2tpkit agent` beside it reporting its load to the
    /// master.
    L2tpns,
}

impl std::fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndpointKind::L2tpkit => "l2tpkit",
            EndpointKind::Xl2tpd => "xl2tpd",
            EndpointKind::L2tpns => "l2tpns",
        })
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub topology: Topology,
    pub endpoints: usize,
    /// Addresses on the initiator namespace's one interface: 198.18.1.1 ..= 198.18.1.M.
    pub initiators: usize,
    /// Where the state file, logs, captures and `lab.json` go; a fresh directory under
    /// `$TMPDIR/l2tpkit-lab/` by default.
    pub run_dir: Option<PathBuf>,
    /// The `l2tpkit` executable the supervisor (and later the roles) run as; found next to the
    /// current executable by default (also from a test binary in `target/*/deps/`).
    pub binary: Option<PathBuf>,
    /// Capture both bridges (`l2tpkit lab capture`: our own packet socket and pcap writer).
    pub captures: bool,
    /// Start the cluster's roles ([`start_roles`]); off for tests of the topology alone.
    pub roles: bool,
    /// The endpoints' tunnel secret (they challenge every LAC and accept hidden AVPs).
    pub secret: Option<String>,
    /// Impair the public segment: the lab's own switch ([`super::impair`]) then stands in for
    /// its bridge and writes its capture.
    pub netem: Option<Netem>,
    /// The master's dispatch policy.
    pub policy: reference::master::Policy,
    /// The endpoints' `--max-retransmits` (5 when `None`).
    pub max_retransmits: Option<u32>,
    /// Every endpoint is a PPP server: CHAP against the lab's one user ([`super::roles::
    /// LAB_USER`]), IPCP addresses from its own slice of 198.19.128.0/17. Off for runs whose
    /// LAC does no PPP (the endpoint would end their calls when LCP times out). l2tpns
    /// endpoints are PPP servers either way.
    pub ppp: bool,
    /// Every role serves `--metrics` on its LAN address (the NAT's and the master's too),
    /// port [`super::roles::METRICS_PORT`], and `RUN_DIR/prometheus.yml` lists them.
    pub metrics: bool,
    /// What runs as the LNS in every endpoint namespace.
    pub endpoint_kind: EndpointKind,
    /// The endpoints share the Tunnel ID space and the NAT translates where two give one
    /// initiator socket the same ID (`nat --translate-tunnel-ids`); l2tpkit endpoints then
    /// draw from all 65,535 (`endpoint --tunnel-ids any`). Off: l2tpkit endpoints get disjoint
    /// blocks that the master routes by, and the NAT replaces an entry whose key another
    /// SCCRP claims (xl2tpd and l2tpns pick their IDs themselves either way). FIG 2 only; a
    /// LAC that sends to the cluster address (as xl2tpd does) cannot reach a translated tunnel.
    pub shared_tunnel_ids: bool,
}

impl LabSpec {
    pub fn new(topology: Topology, endpoints: usize) -> LabSpec {
        LabSpec {
            topology,
            endpoints,
            initiators: 1,
            run_dir: None,
            binary: None,
            captures: true,
            roles: true,
            secret: None,
            netem: None,
            policy: reference::master::Policy::LeastLoad,
            max_retransmits: None,
            ppp: false,
            metrics: false,
            endpoint_kind: EndpointKind::L2tpkit,
            shared_tunnel_ids: false,
        }
    }

    /// Refuses what cannot be built, naming the flags that ask for it.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.shared_tunnel_ids && self.topology != Topology::Fig2 {
            anyhow::bail!(
                "--tunnel-ids any needs --topology fig2: only the FIG 2 NAT tells endpoints \
                 that share Tunnel IDs apart; leave --tunnel-ids out"
            );
        }
        if self.endpoint_kind == EndpointKind::Xl2tpd && self.ppp {
            anyhow::bail!(
                "--ppp cannot go with --endpoint-kind xl2tpd: xl2tpd's pppd is a stand-in that \
                 echoes every frame (no kernel PPP here), so PPP never comes up; leave --ppp out"
            );
        }
        if self.endpoint_kind == EndpointKind::L2tpns {
            if let Some(n) = self
                .max_retransmits
                .filter(|&n| n != super::l2tpns::MAX_RETRANSMITS)
            {
                anyhow::bail!(
                    "--max-retransmits {n} cannot go with --endpoint-kind l2tpns: l2tpns gives a \
                     control message up after {} retransmissions, which no setting of it \
                     changes; leave --max-retransmits out",
                    super::l2tpns::MAX_RETRANSMITS
                );
            }
        }
        Ok(())
    }
}

pub(super) fn preflight(kind: EndpointKind) -> anyhow::Result<()> {
    if !sys::is_root() {
        anyhow::bail!("the lab needs root (network namespaces, veths, bridges)");
    }
    if !sys::have("ip", "-V") {
        anyhow::bail!("`ip` (iproute2) is not installed");
    }
    match kind {
        EndpointKind::L2tpkit => {}
        EndpointKind::Xl2tpd => xl2tpd::preflight()?,
        EndpointKind::L2tpns => l2tpns::preflight()?,
    }
    Ok(())
}

/// `l2tpkit` next to the current executable: the binary itself, or a test binary in
/// `target/<profile>/deps/` whose `target/<profile>/l2tpkit` was built alongside.
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the current executable")?;
    if exe.file_name().is_some_and(|n| n == "l2tpkit") {
        return Ok(exe);
    }
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("l2tpkit");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no l2tpkit binary next to {}: set LabSpec::binary",
        exe.display()
    )
}

/// PPP's Max-Configure for the lab's own roles (its l2tpkit endpoints and `lab run`'s LAC):
/// twice `--max-retransmits`, and never under RFC 1661's 10. A link lossy enough to need more
/// control-message retransmissions loses PPP's Acks as often, and each lost Ack makes both ends
/// of a negotiation start over (measured at 20 % loss with 10: 1 to 4 of 2000 sessions failed
/// in LCP, authentication or IPCP with 10; none with 20).
pub fn ppp_max_configure(max_retransmits: Option<u32>) -> u8 {
    let twice = max_retransmits.unwrap_or(5).saturating_mul(2);
    u8::try_from(twice).unwrap_or(u8::MAX).max(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppp_max_configure_is_twice_the_retransmissions_and_at_least_ten() {
        assert_eq!(ppp_max_configure(None), 10);
        assert_eq!(ppp_max_configure(Some(5)), 10);
        assert_eq!(ppp_max_configure(Some(10)), 20);
        assert_eq!(ppp_max_configure(Some(50)), 100);
    }

    #[test]
    fn xl2tpd_endpoints_refuse_ppp_naming_both_flags() {
        let spec = |kind, ppp| LabSpec {
            endpoint_kind: kind,
            ppp,
            ..LabSpec::new(Topology::Fig2, 3)
        };
        let error = spec(EndpointKind::Xl2tpd, true)
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--ppp") && error.contains("--endpoint-kind xl2tpd"),
            "{error}"
        );
        assert!(spec(EndpointKind::Xl2tpd, false).check().is_ok());
        assert!(spec(EndpointKind::L2tpkit, true).check().is_ok());
        // l2tpns runs PPP either way.
        assert!(spec(EndpointKind::L2tpns, true).check().is_ok());
        assert!(spec(EndpointKind::L2tpns, false).check().is_ok());
    }

    #[test]
    fn shared_tunnel_ids_need_the_fig2_nat() {
        let spec = |topology, kind| LabSpec {
            endpoint_kind: kind,
            shared_tunnel_ids: true,
            ..LabSpec::new(topology, 3)
        };
        for kind in [
            EndpointKind::L2tpkit,
            EndpointKind::Xl2tpd,
            EndpointKind::L2tpns,
        ] {
            assert!(spec(Topology::Fig2, kind).check().is_ok());
            let error = spec(Topology::Fig4, kind).check().unwrap_err().to_string();
            assert!(
                error.contains("--tunnel-ids any") && error.contains("fig2"),
                "{error}"
            );
        }
    }

    #[test]
    fn l2tpns_endpoints_keep_their_own_retransmission_limit() {
        let spec = |n| LabSpec {
            endpoint_kind: EndpointKind::L2tpns,
            max_retransmits: n,
            ..LabSpec::new(Topology::Fig2, 2)
        };
        assert!(spec(None).check().is_ok());
        assert!(spec(Some(5)).check().is_ok());
        let error = spec(Some(8)).check().unwrap_err().to_string();
        assert!(
            error.contains("--max-retransmits 8") && error.contains("--endpoint-kind l2tpns"),
            "{error}"
        );
    }
}
