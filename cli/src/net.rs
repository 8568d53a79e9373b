//! Small helpers the network commands share: seeds, tunnel configuration.

use l2tp::conn::tunnel::TunnelConfig;

/// Wall-clock microseconds: a first sequence number that a restart does not repeat.
pub fn wall_clock_sequence() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// 64 bits from the OS for the tunnels' challenges and random vectors.
pub fn os_seed() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    // RandomState's keys come from the OS too.
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The tunnel settings both `lac` and `endpoint` take from their flags.
pub fn tunnel_config(
    host_name: &str,
    secret: Option<&str>,
    hidden: bool,
) -> anyhow::Result<TunnelConfig> {
    if hidden && secret.is_none() {
        anyhow::bail!("--hidden needs --secret: hidden AVPs are encrypted with the tunnel secret");
    }
    if secret.is_some_and(str::is_empty) {
        anyhow::bail!("--secret must not be empty");
    }
    Ok(TunnelConfig {
        host_name: host_name.to_string(),
        secret: secret.map(|s| s.as_bytes().to_vec()),
        hide_avps: hidden,
        ..TunnelConfig::default()
    })
}

/// The single-threaded tokio runtime every serving command runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_needs_a_secret() {
        assert!(tunnel_config("x", None, true).is_err());
        assert!(tunnel_config("x", Some(""), false).is_err());
        assert!(tunnel_config("x", Some("s"), true).unwrap().hide_avps);
    }
}
