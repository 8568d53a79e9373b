//! `l2tpkit ctl SOCKET REQUEST…`: talk to a running master, NAT or LAC over its control
//! socket.

use std::path::PathBuf;
use std::process::ExitCode;

use reference::control::{request, ControlError, Request};
use reference::master::MasterStatus;

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The role's `--control` socket (in a lab: RUN_DIR/master.sock, RUN_DIR/nat.sock,
    /// RUN_DIR/lac.sock while `lab run` runs).
    pub socket: PathBuf,
    /// `status`; master: `drain NAME`, `deactivate NAME`, `activate NAME`; LAC: `report`,
    /// `rate R`, `pause`, `resume`, `terminate-tunnel TUNNEL [RESULT]`,
    /// `terminate-session TUNNEL SESSION [RESULT]`.
    #[arg(required = true, num_args = 1..=4)]
    pub request: Vec<String>,
    /// Print the role's whole status as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &CtlArgs) -> anyhow::Result<ExitCode> {
    let line = args.request.join(" ");
    // Checked here too, so a typo is named before anything is sent.
    Request::parse(&line).map_err(|e| anyhow::anyhow!("request {line:?}: {e}"))?;
    let status = match request(&args.socket, &line) {
        Ok(status) => status,
        Err(ControlError::Refused(why)) => {
            eprintln!("l2tpkit ctl: refused: {why}");
            return Ok(ExitCode::from(1));
        }
        Err(err) => return Err(err.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    match serde_json::from_value::<MasterStatus>(status.clone()) {
        Ok(master) => print!("{}", master_table(&master)),
        // Not a master: the NAT's status carries its Table 1 as text.
        Err(_) => match status.get("table").and_then(|t| t.as_str()) {
            Some(table) => print!("{table}"),
            None => println!("{}", serde_json::to_string_pretty(&status)?),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per endpoint: what the master decides with.
pub fn master_table(status: &MasterStatus) -> String {
    let mut out = format!(
        "{:<8} {:<15} {:<14} {:<11} {:>8} {:>8} {:>9} {:>10}\n",
        "endpoint", "lan", "state", "admin", "tunnels", "capacity", "dispatched", "forwarded"
    );
    for e in &status.endpoints {
        let state = serde_json::to_value(e.state).unwrap_or_default();
        let admin = serde_json::to_value(e.admin).unwrap_or_default();
        out.push_str(&format!(
            "{:<8} {:<15} {:<14} {:<11} {:>8} {:>8} {:>9} {:>10}\n",
            e.name,
            e.lan_addr.to_string(),
            state.as_str().unwrap_or("?"),
            admin.as_str().unwrap_or("?"),
            e.tunnels,
            e.capacity,
            e.dispatched_total,
            e.forwarded
        ));
    }
    out
}
