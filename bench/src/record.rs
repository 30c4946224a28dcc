//! The benchmarks' record: every run of `weft-bench` appends its results, with the commit and the
//! machine, to `bench/results/<bench>.jsonl`, and prints how they moved against the last run of the same
//! benchmark on the same kind of machine (`weft-bench compare` prints it again later). Ratios to the
//! baselines of the same invocation are what is compared: absolute rates on a shared machine are noise.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The machine a run was made on; runs are compared only with runs of the same [`Machine::kind`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    /// /proc/cpuinfo's CPU family and model ("family 25 model 1"): a VM's model name can be as bare as
    /// "AMD EPYC" on CPUs of different generations. Empty in records made before it was kept.
    #[serde(default)]
    pub cpu_id: String,
    pub cpus: usize,
    pub kernel: String,
    pub dpdk: String,
}

impl Machine {
    /// This machine: /proc/cpuinfo's model name, the online CPUs, the kernel, DPDK's version.
    pub fn this() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "unknown".into());
        let cpu_id = cpu_id(&cpuinfo);
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        Machine { cpu, cpu_id, cpus, kernel, dpdk: dataplane::dpdk::dpdk_version() }
    }

    /// What makes two machines comparable: the CPU model (name, family and model) and how many CPUs.
    pub fn kind(&self) -> String {
        if self.cpu_id.is_empty() {
            format!("{} x{}", self.cpu, self.cpus)
        } else {
            format!("{} ({}) x{}", self.cpu, self.cpu_id, self.cpus)
        }
    }
}

/// "family F model M" from /proc/cpuinfo's first CPU; empty where it does not say (not x86).
fn cpu_id(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    };
    match (field("cpu family"), field("model")) {
        (Some(f), Some(m)) => format!("family {f} model {m}"),
        _ => String::new(),
    }
}

/// One run of one benchmark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The subcommand (`fwd`, `pair`, `io`, ...).
    pub bench: String,
    /// Its command line.
    pub args: Vec<String>,
    /// `git describe --always` of the checkout, `-dirty` when files other than the records themselves
    /// had uncommitted changes (which were measured).
    pub commit: String,
    pub machine: Machine,
    /// Seconds since the epoch.
    pub time: u64,
    /// The rows the run printed (each with a `bench` title).
    pub results: Vec<Value>,
}

/// The commit of the checkout at `dir`, or "unknown" outside one. The records a run appends to
/// `bench/results` do not make the next run's commit dirty (`git describe --dirty` would count them).
pub fn commit_of(dir: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["describe", "--always", "--abbrev=12"]) else { return "unknown".into() };
    let changed = git(&["status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)bench/results"]);
    match changed {
        Some(c) if c.is_empty() => commit,
        _ => format!("{commit}-dirty"),
    }
}

/// `bench/results` of the git checkout the current directory is in, if it is one of weft's.
pub fn default_dir() -> Option<PathBuf> {
    let out = Command::new("git").args(["rev-parse", "--show-toplevel"]).output().ok()?;
    let top = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && top.join("bench/Cargo.toml").is_file()).then(|| top.join("bench/results"))
}

/// The file of a benchmark's records.
pub fn file(dir: &Path, bench: &str) -> PathBuf {
    dir.join(format!("{bench}.jsonl"))
}

/// Append `r` to its benchmark's file (one JSON line).
pub fn append(dir: &Path, r: &Record) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = file(dir, &r.bench);
    let mut f = fs::OpenOptions::new().create(true).append(true).open(&path)?;
    writeln!(f, "{}", serde_json::to_string(r)?)?;
    Ok(path)
}

/// The records of a file, oldest first, and how many lines were not records (reported, not fatal: a
/// hand-edited or truncated line must not hide the rest).
pub fn load(path: &Path) -> anyhow::Result<(Vec<Record>, usize)> {
    let text = fs::read_to_string(path)?;
    let mut bad = 0;
    let records = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).map_err(|_| bad += 1).ok())
        .collect();
    Ok((records, bad))
}

/// The run before the newest one of `records` made on the same kind of machine.
pub fn previous(records: &[Record]) -> Option<(&Record, &Record)> {
    let (now, earlier) = records.split_last()?;
    let kind = now.machine.kind();
    earlier.iter().rev().find(|r| r.machine.kind() == kind).map(|then| (then, now))
}

/// One figure of one row, then and now.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub row: String,
    pub key: String,
    pub then: f64,
    pub now: f64,
}

impl Change {
    /// The change in percent of the earlier figure.
    pub fn percent(&self) -> f64 {
        if self.then == 0.0 {
            0.0
        } else {
            (self.now / self.then - 1.0) * 100.0
        }
    }
}

/// The figures worth comparing in a row: weft's ratios to its baselines (of the medians and of the
/// fastest repetitions), weft's own rate, its own cycles a packet (`fwd`), and its instructions per
/// packet (`icount`: the whole loop, its own part, the path alone).
fn compared(key: &str) -> bool {
    key.starts_with("ratio")
        || key.contains("_ratio")
        || key == "weft_mpps"
        || key == "weft_best_mpps"
        || key == "weft_gbps"
        || key.starts_with("weft_own_cycles")
        || (key.starts_with("weft_") && key.ends_with("instructions"))
}

/// The figures of the rows both runs have (matched by their `bench` title), in the newer run's order.
pub fn changes(then: &Record, now: &Record) -> Vec<Change> {
    let mut out = Vec::new();
    for row in &now.results {
        let Some(title) = row["bench"].as_str() else { continue };
        let Some(old) = then.results.iter().find(|r| r["bench"].as_str() == Some(title)) else { continue };
        let Some(fields) = row.as_object() else { continue };
        for (key, v) in fields {
            if let (true, Some(now_v), Some(then_v)) = (compared(key), v.as_f64(), old[key].as_f64()) {
                out.push(Change { row: title.to_owned(), key: key.clone(), then: then_v, now: now_v });
            }
        }
    }
    out
}

/// The comparison as people read it.
pub fn report(then: &Record, now: &Record) -> String {
    let mut s =
        format!("{}: {} against {} (same machine kind: {})\n", now.bench, now.commit, then.commit, now.machine.kind());
    let list = changes(then, now);
    if list.is_empty() {
        s += "  no row in common\n";
    }
    let mut last_row = "";
    for c in &list {
        if c.row != last_row {
            s += &format!("  {}\n", c.row);
            last_row = &c.row;
        }
        s += &format!("    {:<24} {:>9.3} -> {:>9.3} ({:+.1} %)\n", c.key, c.then, c.now, c.percent());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(commit: &str, cpu: &str, ratio: f64) -> Record {
        Record {
            bench: "fwd".into(),
            args: vec!["fwd".into()],
            commit: commit.into(),
            machine: Machine {
                cpu: cpu.into(),
                cpu_id: "family 25 model 1".into(),
                cpus: 2,
                kernel: "6.1".into(),
                dpdk: "DPDK 22.11".into(),
            },
            time: 0,
            results: vec![
                json!({"bench": "vxlan decap (10 peers)", "reps": 3, "weft_mpps": 30.0, "testpmd_mpps": 60.0, "ratio_vs_testpmd": ratio}),
                json!({"bench": "vxlan encap (10 peers)", "weft_mpps": 20.0}),
            ],
        }
    }

    #[test]
    fn the_newest_run_is_compared_with_the_last_of_its_machine_kind() {
        let dir = std::env::temp_dir().join(format!("weft-record-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for r in [record("a", "Xeon", 0.50), record("b", "EPYC", 0.10), record("c", "Xeon", 0.40)] {
            append(&dir, &r).unwrap();
        }
        // A line that is not a record is counted and skipped.
        fs::OpenOptions::new().append(true).open(file(&dir, "fwd")).unwrap().write_all(b"{not json\n").unwrap();
        append(&dir, &record("d", "Xeon", 0.45)).unwrap();
        let (records, bad) = load(&file(&dir, "fwd")).unwrap();
        assert_eq!((records.len(), bad), (4, 1));
        let (then, now) = previous(&records).unwrap();
        assert_eq!((then.commit.as_str(), now.commit.as_str()), ("c", "d"));
        let c = changes(then, now);
        let ratio = c.iter().find(|c| c.key == "ratio_vs_testpmd").unwrap();
        assert_eq!((ratio.then, ratio.now), (0.40, 0.45));
        assert!((ratio.percent() - 12.5).abs() < 1e-9);
        assert!(c.iter().all(|c| c.key != "testpmd_mpps" && c.key != "reps"), "baselines' rates are noise: {c:?}");
        assert_eq!(c.iter().filter(|c| c.key == "weft_mpps").count(), 2, "both rows: {c:?}");
        assert!(report(then, now).contains("ratio_vs_testpmd"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn own_cycles_and_the_fastest_repetitions_are_compared_but_not_the_baselines() {
        let row = |own: f64| {
            json!({"bench": "vxlan encap (10 peers)", "weft_mpps": 20.0, "weft_best_mpps": 24.0,
                   "testpmd_best_mpps": 40.0, "weft_reps_mpps": [20.0, 24.0, 18.0],
                   "best_ratio_vs_testpmd": 0.6, "weft_own_cycles": own, "weft_own_cycles_best": 40.0,
                   "base_own_cycles": 70.0})
        };
        let (mut then, mut now) = (record("a", "EPYC", 0.5), record("b", "EPYC", 0.5));
        then.results = vec![row(80.0)];
        now.results = vec![row(60.0)];
        let keys: Vec<String> = changes(&then, &now).into_iter().map(|c| c.key).collect();
        for k in ["weft_mpps", "weft_best_mpps", "best_ratio_vs_testpmd", "weft_own_cycles", "weft_own_cycles_best"] {
            assert!(keys.iter().any(|x| x == k), "{k} not compared: {keys:?}");
        }
        for k in ["testpmd_best_mpps", "weft_reps_mpps", "base_own_cycles"] {
            assert!(!keys.iter().any(|x| x == k), "{k} compared: {keys:?}");
        }
        assert!(report(&then, &now).contains("weft_own_cycles "));
    }

    #[test]
    fn instruction_counts_are_compared_but_not_the_base_builds() {
        let row = |n: f64| {
            json!({"bench": "vxlan encap (10 peers)", "weft_own_instructions": n, "base_own_instructions": 300.0,
                   "testpmd_instructions": 200.0})
        };
        let (mut then, mut now) = (record("a", "EPYC", 0.5), record("b", "EPYC", 0.5));
        (then.results, now.results) = (vec![row(250.0)], vec![row(245.0)]);
        let c = changes(&then, &now);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!((c[0].key.as_str(), c[0].then, c[0].now), ("weft_own_instructions", 250.0, 245.0));
        assert!((c[0].percent() + 2.0).abs() < 1e-9);
    }

    /// Two generations of one model name are two kinds; a record from before the family and model were
    /// kept still loads, as a kind of its own.
    #[test]
    fn the_cpu_family_and_model_tell_machines_apart() {
        let (zen3, mut zen4) = (record("a", "AMD EPYC", 0.5), record("b", "AMD EPYC", 0.5));
        zen4.machine.cpu_id = "family 25 model 17".into();
        assert!(previous(&[zen3.clone(), zen4.clone()]).is_none());
        let zen3_cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n\
                            model name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\ncpu family\t: 25\nmodel\t\t: 1\n";
        assert_eq!(cpu_id(zen3_cpuinfo), zen3.machine.cpu_id, "the model name line is not the model");
        assert_eq!(cpu_id("processor\t: 0\nBogoMIPS\t: 50.00\n"), "", "no family, no id");
        let mut old = serde_json::to_value(&zen3).unwrap();
        old["machine"].as_object_mut().unwrap().remove("cpu_id");
        let old: Record = serde_json::from_value(old).unwrap();
        assert_eq!(old.machine.kind(), "AMD EPYC x2");
        assert_eq!(zen3.machine.kind(), "AMD EPYC (family 25 model 1) x2");
    }

    #[test]
    fn a_first_run_has_nothing_to_compare_with() {
        assert!(previous(&[record("a", "Xeon", 0.5)]).is_none());
        assert!(previous(&[record("a", "EPYC", 0.5), record("b", "Xeon", 0.5)]).is_none());
    }

    /// A run's own records leave the commit clean; any other change makes it dirty.
    #[test]
    fn records_do_not_make_the_commit_dirty() {
        let dir = std::env::temp_dir().join(format!("weft-record-git-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bench/results")).unwrap();
        let git = |args: &[&str]| {
            let ok = Command::new("git").args(args).current_dir(&dir).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        fs::write(dir.join("bench/results/fwd.jsonl"), "{}\n").unwrap();
        fs::write(dir.join("code.rs"), "fn a() {}\n").unwrap();
        git(&["add", "-A"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]);
        let clean = commit_of(&dir);
        assert!(!clean.is_empty() && !clean.ends_with("-dirty") && clean != "unknown", "{clean}");
        fs::write(dir.join("bench/results/fwd.jsonl"), "{}\n{}\n").unwrap();
        assert_eq!(commit_of(&dir.join("bench")), clean, "the records alone, seen from a subdirectory too");
        fs::write(dir.join("code.rs"), "fn b() {}\n").unwrap();
        assert_eq!(commit_of(&dir), format!("{clean}-dirty"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
