use super::*;

#[test]
fn a_full_dispatch_memory_forgets_the_oldest_choice_first() {
    let mut master = Master::new(MasterConfig {
        max_remembered: 3,
        ..MasterConfig::new(Ipv4Addr::new(198, 18, 0, 1), "k")
    });
    let key = |id| DispatchKey {
        initiator: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 1701),
        assigned: AssignedTunnel::Plain(id),
    };
    for id in 1..=5 {
        master.remember(Instant::from_micros(u64::from(id)), key(id), 0);
    }
    assert_eq!(master.remembered.len(), 3);
    assert!(!master.remembered.contains_key(&key(1)));
    assert!(!master.remembered.contains_key(&key(2)));
    assert!(master.remembered.contains_key(&key(3)));
    assert_eq!(master.status().totals.remembered_evicted, 2);
}

#[test]
fn tunnel_owner_is_an_interval_lookup() {
    let mut master = Master::new(MasterConfig::new(Ipv4Addr::new(198, 18, 0, 1), "k"));
    master.blocks.insert(10, (19, 0));
    master.blocks.insert(20, (20, 1));
    master.blocks.insert(100, (199, 2));
    let owners: Vec<_> = [9, 10, 19, 20, 21, 99, 100, 150, 199, 200]
        .into_iter()
        .map(|id| master.tunnel_owner(id))
        .collect();
    assert_eq!(
        owners,
        [
            None,
            Some(0),
            Some(0),
            Some(1),
            None,
            None,
            Some(2),
            Some(2),
            Some(2),
            None
        ]
    );
    assert_eq!(master.block_owner_other_than(1, 9, None), None);
    assert_eq!(master.block_owner_other_than(1, 10, None), Some(0));
    assert_eq!(master.block_owner_other_than(1, 300, Some(2)), Some(1));
    assert_eq!(master.block_owner_other_than(150, 300, Some(2)), None);
    assert_eq!(master.block_owner_other_than(21, 99, None), None);
}
