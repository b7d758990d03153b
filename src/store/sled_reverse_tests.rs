//! Tests of the vendored sled's reverse scan with no upper bound (`Tree::last`, which
//! `trim_log` reads): it starts at a 1 KiB key of 0xFF rather than published sled's 1 MiB one,
//! and walks right from there (vendor/sled/PATCHED.md).

/// Keys that start with more 0xFF bytes than the start key, among keys that do not, in a tree
/// of many leaves: the first seek lands short of the rightmost leaf.
#[test]
fn reverse_scans_reach_keys_above_the_start_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let t = db.open_tree(b"t").unwrap();
    let mut keys = Vec::new();
    for i in 0_u32..3000 {
        let mut k = if i % 2 == 0 { vec![255; 1500] } else { vec![7] };
        k.extend_from_slice(&i.to_be_bytes());
        t.insert(&k, &[0; 64][..]).unwrap();
        keys.push(k);
    }
    keys.sort();
    assert_eq!(&*t.last().unwrap().unwrap().0, &keys[keys.len() - 1][..]);
    let rev: Vec<Vec<u8>> = t.iter().rev().map(|r| r.unwrap().0.to_vec()).collect();
    assert!(rev.iter().eq(keys.iter().rev()));
    let tail: Vec<Vec<u8>> = t
        .range(keys[100].clone()..)
        .rev()
        .map(|r| r.unwrap().0.to_vec())
        .collect();
    assert!(tail.iter().eq(keys[100..].iter().rev()));
    // And the usual case: keys below the start key.
    let small = db.open_tree(b"small").unwrap();
    for i in 0_u64..2000 {
        small.insert(i.to_be_bytes(), &[0; 64][..]).unwrap();
    }
    assert_eq!(
        &*small.last().unwrap().unwrap().0,
        &1999_u64.to_be_bytes()[..]
    );
}
