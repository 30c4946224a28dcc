//! Choosing this node's subnet the way flanneld does (`pkg/subnet/etcd` `tryAcquireLease`): reuse the
//! lease whose PublicIP is ours; else the subnet from the previous subnet file, if nobody holds it; else a
//! free subnet between SubnetMin and SubnetMax. flanneld draws the free one at random among the first 100
//! candidates so that racing nodes rarely collide; weft does the same with an injected random number so
//! tests are deterministic.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use weft_config::{Ipv4Net, Lease, NetworkConfig};

/// How the subnet was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// A lease with our PublicIP already exists: keep it (its TTL is renewed).
    Reuse(Ipv4Net),
    /// The subnet recorded in the previous subnet file is free again.
    Previous(Ipv4Net),
    /// A free subnet.
    Fresh(Ipv4Net),
}

impl Choice {
    pub fn subnet(&self) -> Ipv4Net {
        match *self {
            Choice::Reuse(n) | Choice::Previous(n) | Choice::Fresh(n) => n,
        }
    }
}

/// Why no subnet could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("no free subnet between SubnetMin and SubnetMax of {network}: all {total} are leased or reserved")]
    Exhausted { network: Ipv4Net, total: usize },
}

/// Pick this node's subnet. `existing` holds every key under `<prefix>/subnets/` (leases and
/// reservations alike, whatever their backend), `avoid` subnets just lost in a race.
pub fn choose_subnet(
    cfg: &NetworkConfig,
    existing: &HashMap<Ipv4Net, Lease>,
    public_ip: Ipv4Addr,
    previous: Option<Ipv4Net>,
    avoid: &[Ipv4Net],
    random: u64,
) -> Result<Choice, AllocateError> {
    // A lease of ours inside the current network: reuse it (sorted for a stable answer if, wrongly,
    // there are several).
    let mut ours: Vec<Ipv4Net> = existing
        .iter()
        .filter(|(net, l)| {
            l.public_ip == public_ip && cfg.network.contains_net(net) && net.prefix_len() == cfg.subnet_len
        })
        .map(|(n, _)| *n)
        .collect();
    ours.sort();
    if let Some(n) = ours.first() {
        return Ok(Choice::Reuse(*n));
    }
    let taken = |n: &Ipv4Net| existing.keys().any(|e| e.overlaps(n)) || avoid.contains(n);
    if let Some(prev) = previous {
        let in_range = prev.prefix_len() == cfg.subnet_len
            && u32::from(prev.addr()) >= u32::from(cfg.subnet_min)
            && u32::from(prev.addr()) <= u32::from(cfg.subnet_max);
        if in_range && !taken(&prev) {
            return Ok(Choice::Previous(prev));
        }
    }
    let candidates: Vec<Ipv4Net> = cfg.subnets().filter(|n| !taken(n)).take(100).collect();
    if candidates.is_empty() {
        return Err(AllocateError::Exhausted { network: cfg.network, total: cfg.subnets().count() });
    }
    Ok(Choice::Fresh(candidates[(random % candidates.len() as u64) as usize]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NetworkConfig {
        NetworkConfig::from_json(r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.4.0","Backend":{"Type":"vxlan"}}"#).unwrap()
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn lease(ip: [u8; 4]) -> Lease {
        Lease::vxlan(Ipv4Addr::from(ip), weft_config::Vni::ONE, "02:00:00:00:00:01".parse().unwrap())
    }

    const ME: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

    #[test]
    fn reuses_our_lease() {
        let mut ex = HashMap::new();
        ex.insert(net("10.244.3.0/24"), lease([192, 168, 77, 1]));
        ex.insert(net("10.244.1.0/24"), lease([192, 168, 77, 2]));
        assert_eq!(
            choose_subnet(&cfg(), &ex, ME, Some(net("10.244.2.0/24")), &[], 0),
            Ok(Choice::Reuse(net("10.244.3.0/24")))
        );
    }

    #[test]
    fn takes_previous_subnet_when_free() {
        let mut ex = HashMap::new();
        ex.insert(net("10.244.1.0/24"), lease([192, 168, 77, 2]));
        assert_eq!(
            choose_subnet(&cfg(), &ex, ME, Some(net("10.244.4.0/24")), &[], 0),
            Ok(Choice::Previous(net("10.244.4.0/24")))
        );
        // Held by someone else: a fresh one instead.
        let got = choose_subnet(&cfg(), &ex, ME, Some(net("10.244.1.0/24")), &[], 0).unwrap();
        assert!(matches!(got, Choice::Fresh(n) if n != net("10.244.1.0/24")));
        // Outside SubnetMin..SubnetMax (the config changed): not reused.
        assert!(matches!(
            choose_subnet(&cfg(), &ex, ME, Some(net("10.244.9.0/24")), &[], 0).unwrap(),
            Choice::Fresh(_)
        ));
    }

    #[test]
    fn fresh_skips_leases_reservations_and_lost_races() {
        let mut ex = HashMap::new();
        ex.insert(net("10.244.1.0/24"), lease([192, 168, 77, 2]));
        // A host-gw lease or a reservation holds its subnet just the same.
        ex.insert(
            net("10.244.2.0/24"),
            Lease {
                public_ip: Ipv4Addr::new(192, 168, 77, 9),
                backend_type: "host-gw".into(),
                backend_data: serde_json::Value::Null,
            },
        );
        let avoid = [net("10.244.3.0/24")];
        for r in 0..10 {
            assert_eq!(choose_subnet(&cfg(), &ex, ME, None, &avoid, r), Ok(Choice::Fresh(net("10.244.4.0/24"))));
        }
    }

    #[test]
    fn random_spreads_over_candidates() {
        let ex = HashMap::new();
        let picks: std::collections::HashSet<_> =
            (0..4).map(|r| choose_subnet(&cfg(), &ex, ME, None, &[], r).unwrap().subnet()).collect();
        assert_eq!(picks.len(), 4);
    }

    #[test]
    fn exhausted_names_the_network() {
        let mut ex = HashMap::new();
        for i in 1..=4 {
            ex.insert(net(&format!("10.244.{i}.0/24")), lease([192, 168, 77, 10 + i]));
        }
        let e = choose_subnet(&cfg(), &ex, ME, None, &[], 0).unwrap_err();
        assert_eq!(e, AllocateError::Exhausted { network: net("10.244.0.0/16"), total: 4 });
    }
}
