//! `l2tpkit decode`'s path (read the pcap, parse, format one line each) over a capture of the
//! sample conversation's control messages: the micro-benchmark beside `l2tpkit-bench decode`.
//!
//! `cargo bench -p l2tpkit-bench --bench decode`

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use divan::counter::ItemsCount;
use divan::Bencher;
use l2tp::wire::message::ParseOptions;
use l2tp::wire::samples;

/// Small enough that one decode pass takes milliseconds, big enough to leave the page cache warm
/// and the per-file cost small.
const PACKETS: u64 = 20_000;

/// The capture, written once per process and removed when the benchmarks are done.
struct Capture(PathBuf);

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

static CAPTURE: OnceLock<PathBuf> = OnceLock::new();

fn capture() -> &'static PathBuf {
    CAPTURE.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("l2tpkit-bench-decode-{}.pcap", std::process::id()));
        l2tpkit_bench::decode::write_synthetic(&path, PACKETS).expect("writing the capture");
        path
    })
}

fn main() {
    let path = capture().clone();
    let _remove = Capture(path);
    divan::main();
}

/// One pass over the file with the sample secret (hidden AVPs decrypted), output discarded.
#[divan::bench(sample_count = 30)]
fn decode_file(bencher: Bencher) {
    let path = capture();
    let options = ParseOptions {
        secret: Some(samples::SECRET),
    };
    bencher.counter(ItemsCount::new(PACKETS)).bench(|| {
        let mut sink = io::BufWriter::with_capacity(1 << 16, io::sink());
        let counts = l2tpkit::decode::decode_file(path, 1701, false, &options, &mut sink)
            .expect("the synthetic capture decodes");
        assert_eq!(counts.malformed, 0);
        counts.l2tp()
    });
}

/// The same pass with `--json`: one JSON object a packet.
#[divan::bench(sample_count = 30)]
fn decode_file_json(bencher: Bencher) {
    let path = capture();
    let options = ParseOptions {
        secret: Some(samples::SECRET),
    };
    bencher.counter(ItemsCount::new(PACKETS)).bench(|| {
        let mut sink = io::BufWriter::with_capacity(1 << 16, io::sink());
        l2tpkit::decode::decode_file(path, 1701, true, &options, &mut sink)
            .expect("the synthetic capture decodes")
            .l2tp()
    });
}
