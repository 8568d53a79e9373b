//! The hop tables: each figure's steps with who sends, who receives and who made the copy.

use super::Party::{Cluster, EndpointGlobal, EndpointLan, Initiator, Nat};
use super::Side::{Lan, Public};
use super::Stage::{Ack, Connected, Reply, Request};
use super::{Hop, Party, Side, Stage, Translator};
use crate::sequence::report::Variant;

const fn hop(
    step: u16,
    stage: Stage,
    side: Side,
    (src, dst): (Party, Party),
    by: Option<Translator>,
    verb: &'static str,
) -> Hop {
    Hop {
        step,
        stage,
        side,
        src,
        dst,
        by,
        verb,
    }
}

const SENT_TO_CLUSTER: &str = "was sent to the cluster";
const FORWARDED_BY_MASTER: &str = "was forwarded by the master";
const SENT_BY_ENDPOINT: &str = "was sent by the endpoint";
const SENT_BY_INITIATOR: &str = "was sent by the initiator";
const LEFT_NAT: &str = "left the NAT";
const FORWARDED_BY_NAT: &str = "was forwarded by the NAT";

// One hop per line: step, stage, side, (source, destination), who made the copy, in words.
#[rustfmt::skip]
static FIG3: [Hop; 8] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(104, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(106, Reply, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(108, Reply, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
    hop(110, Connected, Public, (Initiator, Nat), None, SENT_BY_INITIATOR),
    hop(112, Connected, Lan, (Initiator, EndpointLan), Some(Translator::NatIn), FORWARDED_BY_NAT),
    hop(114, Ack, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(116, Ack, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
];

#[rustfmt::skip]
static FIG3_VIA_MASTER: [Hop; 8] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(104, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(106, Reply, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(108, Reply, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
    hop(110, Connected, Public, (Initiator, Cluster), None, SENT_BY_INITIATOR),
    hop(112, Connected, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(114, Ack, Lan, (EndpointLan, Initiator), None, SENT_BY_ENDPOINT),
    hop(116, Ack, Public, (Nat, Initiator), Some(Translator::NatOut), LEFT_NAT),
];

#[rustfmt::skip]
static FIG5: [Hop; 5] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(204, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(206, Reply, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
    hop(210, Connected, Public, (Initiator, EndpointGlobal), None, SENT_BY_INITIATOR),
    hop(214, Ack, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
];

/// Step 212 is not in the patent: named by analogy with 112, the forwarded SCCCN.
#[rustfmt::skip]
static FIG5_VIA_MASTER: [Hop; 6] = [
    hop(102, Request, Public, (Initiator, Cluster), None, SENT_TO_CLUSTER),
    hop(204, Request, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(206, Reply, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
    hop(210, Connected, Public, (Initiator, Cluster), None, SENT_BY_INITIATOR),
    hop(212, Connected, Lan, (Initiator, EndpointLan), Some(Translator::Master), FORWARDED_BY_MASTER),
    hop(214, Ack, Public, (EndpointGlobal, Initiator), None, SENT_BY_ENDPOINT),
];

pub(super) fn hops(variant: Variant) -> &'static [Hop] {
    match variant {
        Variant::Fig3 => &FIG3,
        Variant::Fig3ViaMaster => &FIG3_VIA_MASTER,
        Variant::Fig5 => &FIG5,
        Variant::Fig5ViaMaster => &FIG5_VIA_MASTER,
    }
}
