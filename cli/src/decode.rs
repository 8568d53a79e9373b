//! `l2tpkit decode`: read captures back, one line or one JSON object per L2TP packet.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use l2tp::capture::{CaptureReader, RecordKind, UdpDatagram};
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
        missing_avps: control
            .map(|message| rules::missing_avps(message).map(|avp| avp.name()).collect())
            .unwrap_or_default(),
        error: parsed.as_ref().err().map(ToString::to_string),
    };
    serde_json::to_writer(&mut *out, &object)?;
    writeln!(out)
}
