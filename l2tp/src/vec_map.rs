//! [`VecMap`]: a map kept as a sorted `Vec`, for the many small maps a node holds per tunnel.
//!
//! A tunnel carries one or two sessions, and a `BTreeMap` allocates a whole node of eleven
//! entries for the first one (about 750 octets for the core's sessions, 1.1 KB for the LAC's
//! records of them): at 100,000 live tunnels that was most of the memory. A `VecMap` grows one
//! entry at a time while small and doubles after, and gives its memory back when the last entry
//! goes. Lookups halve the slice (O(log n), as before); insert and remove shift the entries
//! after, which a map of thousands of sessions pays on setup and teardown only.

/// Up to this many entries the map grows by one.
const GROW_BY_ONE: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord + Copy, V> VecMap<K, V> {
    pub fn new() -> Self {
        VecMap::default()
    }

    fn find(&self, key: K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(&key))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries it has room for without growing.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(*key).is_ok()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let at = self.find(*key).ok()?;
        self.entries.get(at).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.find(*key).ok()?;
        self.entries.get_mut(at).map(|(_, v)| v)
    }

    /// Adds or replaces the entry of `key`; the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(key) {
            Ok(at) => self
                .entries
                .get_mut(at)
                .map(|(_, old)| std::mem::replace(old, value)),
            Err(at) => {
                let len = self.entries.len();
                if len == self.entries.capacity() {
                    self.entries
                        .reserve_exact(if len < GROW_BY_ONE { 1 } else { len });
                }
                self.entries.insert(at, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.find(*key).ok()?;
        let (_, value) = self.entries.remove(at);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(value)
    }

    /// Keeps the entries for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + '_ {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// In key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator + '_ {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K: Ord + Copy, V> IntoIterator for &'a mut VecMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter =
        std::iter::Map<std::slice::IterMut<'a, (K, V)>, fn(&'a mut (K, V)) -> (&'a K, &'a mut V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }
}

impl<'a, K: Ord + Copy, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_or_two_entries_take_no_spare_room_and_the_last_gives_it_back() {
        let mut map = VecMap::new();
        map.insert(7u16, "a");
        assert_eq!(map.capacity(), 1);
        map.insert(3, "b");
        assert_eq!(map.capacity(), 2);
        map.remove(&3);
        map.remove(&7);
        assert_eq!(map.capacity(), 0);
        for k in 0..5u16 {
            map.insert(k, "x");
        }
        assert_eq!(map.capacity(), 8, "doubling past four");
    }

    proptest! {
        /// Any sequence of inserts and removes leaves it equal to a BTreeMap given the same.
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec((any::<bool>(), 0u16..64, any::<u8>()), 0..200)) {
            let mut map = VecMap::new();
            let mut model = std::collections::BTreeMap::new();
            for (insert, key, value) in ops {
                if insert {
                    prop_assert_eq!(map.insert(key, value), model.insert(key, value));
                } else {
                    prop_assert_eq!(map.remove(&key), model.remove(&key));
                }
                prop_assert_eq!(map.get(&key), model.get(&key));
                prop_assert_eq!(map.len(), model.len());
            }
            let got: Vec<(u16, u8)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            let want: Vec<(u16, u8)> = model.into_iter().collect();
            prop_assert_eq!(got, want);
        }
    }
}
