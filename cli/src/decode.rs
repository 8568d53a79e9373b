//! `l2tpkit decode`: read captures back, one line or one JSON object per L2TP packet.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use l2tp::capture::{CaptureReader, RecordKind, UdpDatagram};
use l2tp::ppp::describe::{describe, Summary};
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{rules, ControlMessage, PacketRepr};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// pcap or pcapng files (Ethernet, RAW, IPv4, Linux SLL/SLL2 link types).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// One JSON object per packet, every AVP typed.
    #[arg(long)]
    pub json: bool,
    /// UDP port that carries L2TP (either side of the datagram).
    #[arg(long, default_value_t = 1701)]
    pub port: u16,
    /// Tunnel secret, to unhide hidden AVPs (RFC 2661 §4.3).
    #[arg(long)]
    pub secret: Option<String>,
}

/// What one decode pass saw; printed at the end and used by `bench`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub control: u64,
    pub zlb: u64,
    pub data: u64,
    pub malformed: u64,
    pub missing_avps: u64,
    pub other_udp: u64,
    pub fragments: u64,
    pub not_udp: u64,
}

impl Counts {
    pub fn l2tp(&self) -> u64 {
        self.control + self.data + self.malformed
    }
}

pub fn run(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
    let options = ParseOptions {
        secret: args.secret.as_deref().map(str::as_bytes),
    };
    let mut total = Counts::default();
    for path in &args.files {
        let counts = decode_file(path, args.port, args.json, &options, &mut out)?;
        for (sum, add) in total.fields_mut().into_iter().zip(counts.fields()) {
            *sum += add;
        }
    }
    out.flush().context("writing to stdout")?;
    eprintln!(
        "{} L2TP packets ({} control of which {} ZLB, {} data, {} malformed, {} missing a mandatory AVP); \
         skipped {} other UDP, {} IP fragments, {} non-UDP records",
        total.l2tp(),
        total.control,
        total.zlb,
        total.data,
        total.malformed,
        total.missing_avps,
        total.other_udp,
        total.fragments,
        total.not_udp
    );
    Ok(if total.malformed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

impl Counts {
    fn fields(&self) -> [u64; 8] {
        [
            self.control,
            self.zlb,
            self.data,
            self.malformed,
            self.missing_avps,
            self.other_udp,
            self.fragments,
            self.not_udp,
        ]
    }
    fn fields_mut(&mut self) -> [&mut u64; 8] {
        [
            &mut self.control,
            &mut self.zlb,
            &mut self.data,
            &mut self.malformed,
            &mut self.missing_avps,
            &mut self.other_udp,
            &mut self.fragments,
            &mut self.not_udp,
        ]
    }
}

/// Decodes one file into `out`; errors name the file and the record.
pub fn decode_file(
    path: &Path,
    port: u16,
    json: bool,
    options: &ParseOptions,
    out: &mut impl Write,
) -> anyhow::Result<Counts> {
    let mut reader = CaptureReader::open(path)?;
    let mut counts = Counts::default();
    let mut first: Option<std::time::Duration> = None;
    let mut line = String::with_capacity(256);
    while let Some(record) = reader.next_datagram() {
        let record = record?;
        let datagram = match record.kind {
            RecordKind::Udp(datagram) => datagram,
            RecordKind::Fragment { .. } => {
                counts.fragments += 1;
                continue;
            }
            RecordKind::Other(_) => {
                counts.not_udp += 1;
                continue;
            }
        };
        if datagram.src.port() != port && datagram.dst.port() != port {
            counts.other_udp += 1;
            continue;
        }
        let start = *first.get_or_insert(record.timestamp);
        let relative = record.timestamp.saturating_sub(start);
        let packet = Packet {
            index: record.index,
            time: record.timestamp.as_secs_f64(),
            relative_micros: u64::try_from(relative.as_micros()).unwrap_or(u64::MAX),
            datagram: &datagram,
        };
        let parsed = PacketRepr::parse(datagram.payload, options);
        match &parsed {
            Ok(PacketRepr::Control(message)) => {
                counts.control += 1;
                if message.is_zlb() {
                    counts.zlb += 1;
                }
                if rules::missing_avps(message).next().is_some() {
                    counts.missing_avps += 1;
                }
            }
            Ok(PacketRepr::Data { .. }) => counts.data += 1,
            Err(_) => counts.malformed += 1,
        }
        if json {
            write_json(out, &packet, &parsed)?;
        } else {
            write_line(out, &mut line, &packet, &parsed)?;
        }
    }
    Ok(counts)
}

struct Packet<'d, 'a> {
    index: u64,
    time: f64,
    relative_micros: u64,
    datagram: &'d UdpDatagram<'a>,
}

/// Formats one packet as a line into `line` (reused across packets: this is the hot path of
/// `decode`, so numbers go through itoa and the line is written out in one call).
fn write_line(
    out: &mut impl Write,
    line: &mut String,
    packet: &Packet,
    parsed: &Result<PacketRepr, l2tp::wire::Error>,
) -> io::Result<()> {
    use std::fmt::Write as _;
    line.clear();
    let d = packet.datagram;
    push_time(line, packet.relative_micros);
    line.push(' ');
    push_addr(line, d.src);
    line.push_str(" > ");
    push_addr(line, d.dst);
    line.push(' ');
    let mut num = itoa::Buffer::new();
    let mut push_field = |line: &mut String, name: &str, value: u16| {
        line.push_str(name);
        line.push_str(num.format(value));
    };
    match parsed {
        Err(err) => {
            let _ = write!(line, "malformed: {err}");
        }
        Ok(PacketRepr::Data { header, payload }) => {
            push_field(line, "data t=", header.tunnel_id);
            push_field(line, " s=", header.session_id);
            if let Some(seq) = header.sequence {
                push_field(line, " ns=", seq.ns);
                push_field(line, " nr=", seq.nr);
            }
            line.push_str(" len=");
            line.push_str(itoa::Buffer::new().format(payload.len()));
            let _ = write!(line, " | {}", describe(payload));
        }
        Ok(PacketRepr::Control(message)) => {
            let h = &message.header;
            let (ns, nr) = h.sequence.map_or((0, 0), |seq| (seq.ns, seq.nr));
            push_field(line, "ctrl t=", h.tunnel_id);
            push_field(line, " s=", h.session_id);
            push_field(line, " ns=", ns);
            push_field(line, " nr=", nr);
            line.push(' ');
            match message.message_type() {
                None => line.push_str("ZLB"),
                Some(kind) => {
                    let _ = write!(line, "{kind}");
                }
            }
            // The Message Type AVP is already the line's verb.
            for avp in message.avps.iter().skip(1) {
                let _ = write!(line, " {avp}");
            }
            for missing in rules::missing_avps(message) {
                line.push_str(" !missing:");
                line.push_str(missing.short());
            }
        }
    }
    line.push('\n');
    out.write_all(line.as_bytes())
}

/// Seconds since the file's first packet, six decimals, right-aligned like tshark's.
fn push_time(line: &mut String, micros: u64) {
    let mut num = itoa::Buffer::new();
    let secs = num.format(micros / 1_000_000);
    for _ in secs.len()..4 {
        line.push(' ');
    }
    line.push_str(secs);
    line.push('.');
    let frac = micros % 1_000_000;
    let digits = itoa::Buffer::new().format(frac).len();
    for _ in digits..6 {
        line.push('0');
    }
    line.push_str(num.format(frac));
}

fn push_addr(line: &mut String, addr: std::net::SocketAddrV4) {
    let mut num = itoa::Buffer::new();
    for (i, octet) in addr.ip().octets().into_iter().enumerate() {
        if i > 0 {
            line.push('.');
        }
        line.push_str(num.format(octet));
    }
    line.push(':');
    line.push_str(num.format(addr.port()));
}

#[derive(Serialize)]
struct JsonPacket<'p> {
    record: u64,
    time: f64,
    relative: f64,
    src: String,
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packet: Option<&'p PacketRepr<'p>>,
    /// The PPP frame a data message carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    ppp: Option<Summary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing_avps: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn write_json(
    out: &mut impl Write,
    packet: &Packet,
    parsed: &Result<PacketRepr, l2tp::wire::Error>,
) -> io::Result<()> {
    let control: Option<&ControlMessage> = match parsed {
        Ok(PacketRepr::Control(message)) => Some(message),
        _ => None,
    };
    let object = JsonPacket {
        record: packet.index,
        time: packet.time,
        relative: packet.relative_micros as f64 / 1e6,
        src: packet.datagram.src.to_string(),
        dst: packet.datagram.dst.to_string(),
        message_type: control.map(|message| {
            message
                .message_type()
                .map_or_else(|| "ZLB".to_string(), |kind| kind.to_string())
        }),
        packet: parsed.as_ref().ok(),
        ppp: match parsed {
            Ok(PacketRepr::Data { payload, .. }) => Some(describe(payload)),
            _ => None,
        },
        missing_avps: control
            .map(|message| rules::missing_avps(message).map(|avp| avp.name()).collect())
            .unwrap_or_default(),
        error: parsed.as_ref().err().map(ToString::to_string),
    };
    serde_json::to_writer(&mut *out, &object)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use l2tp::capture::{CaptureWriter, Linktype};
    use l2tp::wire::HeaderRepr;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    /// An LCP Configure-Request: MRU 1500, Auth-Protocol CHAP with MD5, Magic-Number.
    const LCP_CONFREQ: [u8; 23] = [
        0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x13, 0x01, 0x04, 0x05, 0xdc, 0x03, 0x05, 0xc2,
        0x23, 0x05, 0x05, 0x06, 0x01, 0x02, 0x03, 0x04,
    ];
    /// An LCP Configure-Request whose second option has Length 0.
    const LCP_BAD_OPTION: [u8; 14] = [
        0xff, 0x03, 0xc0, 0x21, 0x01, 0x02, 0x00, 0x0a, 0x01, 0x04, 0x05, 0xdc, 0x05, 0x00,
    ];

    /// A pcap with a control message, then two data messages carrying PPP; removed on drop.
    struct Pcap(PathBuf);

    impl Pcap {
        /// `name` keeps tests of one process (one pid) apart.
        fn write(name: &str) -> Pcap {
            let path = std::env::temp_dir()
                .join(format!("l2tpkit-decode-{name}-{}.pcap", std::process::id()));
            let mut writer = CaptureWriter::create(&path, Linktype::RAW).unwrap();
            let lac = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 1701);
            let lns = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 1701);
            let sccrq = l2tp::wire::samples::every_message().remove(0);
            let messages = [sccrq, data(&LCP_CONFREQ), data(&LCP_BAD_OPTION)];
            for (i, message) in (0u64..).zip(&messages) {
                let bytes = message.to_vec(None).unwrap();
                writer
                    .write_udp(Duration::from_millis(1000 + i), lac, lns, &bytes)
                    .unwrap();
            }
            writer.flush().unwrap();
            Pcap(path)
        }

        fn decode(&self, json: bool) -> (Counts, Vec<String>) {
            let mut out = Vec::new();
            let counts =
                decode_file(&self.0, 1701, json, &ParseOptions::default(), &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            (counts, text.lines().map(str::to_owned).collect())
        }
    }

    impl Drop for Pcap {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn data(ppp: &'static [u8]) -> PacketRepr<'static> {
        PacketRepr::Data {
            header: HeaderRepr::data(1, 2),
            payload: ppp,
        }
    }

    #[test]
    fn data_lines_describe_their_ppp_frame() {
        let pcap = Pcap::write("text");
        let (counts, lines) = pcap.decode(false);
        assert_eq!((counts.control, counts.data, counts.malformed), (1, 2, 0));
        assert!(
            lines[0].contains(" SCCRQ ") && !lines[0].contains(" | "),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            "   0.001000 127.0.0.2:1701 > 127.0.0.3:1701 data t=1 s=2 len=23 | LCP \
             Configure-Request id=1 MRU=1500 Auth=CHAP-MD5 Magic=0x01020304"
        );
        assert_eq!(
            lines[2],
            "   0.002000 127.0.0.2:1701 > 127.0.0.3:1701 data t=1 s=2 len=14 | LCP \
             Configure-Request id=2 MRU=1500 malformed: PPP option Length at byte 9: less than \
             2: an option's Length counts its Type and Length octets"
        );
    }

    #[test]
    fn json_data_objects_gain_a_ppp_field() {
        let pcap = Pcap::write("json");
        let (_, lines) = pcap.decode(true);
        let objects: Vec<serde_json::Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert!(objects[0].get("ppp").is_none(), "{}", lines[0]);
        assert_eq!(
            objects[1]["ppp"],
            serde_json::json!({
                "protocol": 0xc021,
                "protocol_name": "LCP",
                "code": 1,
                "code_name": "Configure-Request",
                "identifier": 1,
                "options": [
                    {"mru": 1500},
                    {"auth_protocol": {"protocol": 0xc223, "algorithm": 5}},
                    {"magic_number": 0x0102_0304},
                ],
            })
        );
        assert_eq!(objects[1]["packet"]["payload"], 23);
        let malformed = objects[2]["ppp"]["malformed"].as_str().unwrap();
        assert!(
            malformed.starts_with("PPP option Length at byte 9"),
            "{malformed}"
        );
        assert_eq!(
            objects[2]["ppp"]["options"],
            serde_json::json!([{"mru": 1500}])
        );
    }
}
