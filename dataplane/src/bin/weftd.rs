//! weftd: a flannel VXLAN node whose dataplane runs on DPDK.

use clap::{CommandFactory, FromArgMatches, Parser};

#[derive(Debug, Parser)]
#[command(name = "weftd", about = "flannel-compatible VXLAN dataplane on DPDK")]
struct Cli {}

fn version() -> String {
    format!("{} ({})", env!("CARGO_PKG_VERSION"), dataplane::dpdk::dpdk_version())
}

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().version(version().leak() as &str).get_matches();
    let _cli = Cli::from_arg_matches(&matches)?;
    anyhow::bail!("weftd's forwarding mode is not built yet; `weftd --version` works");
}
