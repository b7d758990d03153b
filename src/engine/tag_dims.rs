//! The tag dimension: a segment's `start` tags named by `history.tag_dimensions` counted as keys
//! `name=value` of [`DimKind::Tag`], in interval buckets only (the history and `report` read
//! those; no trailing window shows tags, so no minute bucket is spent on them), under
//! `history.max_tag_values` with each name's own `name=(other)` past it.
//!
//! The tags a segment counts under must outlive its `start` until its facts are folded, so open
//! calls keep the tags these names (or an `[[sla]]` scope) use, and nothing else.

use super::fold::Target;
use super::report::DimKind;
use super::segment::Segment;
use super::window::Tier;
use super::Engine;

/// The value a tag dimension's overflow key has in place of the tag's value.
const OVERFLOW_VALUE: &str = "(other)";

/// The key a tag counts under: `name=value`.
#[must_use]
pub fn tag_key(name: &str, value: &str) -> String {
    format!("{name}={value}")
}

/// The (key, overflow key) of every configured tag name the segment's `start` gave a value, in
/// the configured order. A name given twice counts once, with its first value.
fn keys_of(dims: &[String], tags: &[(String, String)]) -> Vec<(String, String)> {
    dims.iter()
        .filter_map(|name| {
            let (_, value) = tags.iter().find(|(k, _)| k == name)?;
            Some((tag_key(name, value), tag_key(name, OVERFLOW_VALUE)))
        })
        .collect()
}

impl Engine {
    /// The tags of a `start` worth keeping on its call: those a tag dimension or some
    /// objective's scope names. None when neither names any (the default), at no cost.
    pub(super) fn tags_kept(&self, tags: &[(String, String)]) -> Vec<(String, String)> {
        if tags.is_empty() || (self.s.tag_dims.is_empty() && !self.sla.keeps_tags()) {
            return Vec::new();
        }
        tags.iter()
            .filter(|(k, _)| self.s.tag_dims.contains(k) || self.sla.keeps(k))
            .cloned()
            .collect()
    }

    /// Folds a segment's facts into the interval buckets of its tag keys: `targets` are the
    /// (tier, bucket start, facts) its other dimensions were folded into, `n_facts` how many
    /// facts it brought (for the overflow count).
    pub(super) fn fold_tags(
        &mut self,
        seg: &Segment,
        targets: &[Option<Target<'_>>],
        n_facts: usize,
    ) {
        if self.s.tag_dims.is_empty() || seg.tags.is_empty() {
            return;
        }
        let limit = self.s.max_keys(DimKind::Tag);
        for (name, overflow) in keys_of(&self.s.tag_dims, seg.tags) {
            let (key, overflowed) = self.keys.resolve_or(DimKind::Tag, &name, &overflow, limit);
            if overflowed {
                self.count_overflow(DimKind::Tag, n_facts);
            }
            for t in targets.iter().flatten() {
                // The long windows' totals are kept for every key of the interval buckets (they
                // are rebuilt from them), so tag keys are added too, though no query reads them.
                if t.tier == Tier::Interval {
                    self.fold_into(t.tier, t.start, key, t.facts());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_segment_counts_under_each_configured_name_it_has_a_value_for() {
        let dims = vec!["tier".to_string(), "customer".to_string()];
        assert_eq!(
            keys_of(
                &dims,
                &tags(&[("customer", "acme"), ("vip", "y"), ("tier", "gold")])
            ),
            vec![
                ("tier=gold".to_string(), "tier=(other)".to_string()),
                ("customer=acme".to_string(), "customer=(other)".to_string()),
            ]
        );
        assert!(keys_of(&dims, &tags(&[("vip", "y")])).is_empty());
        assert!(keys_of(&[], &tags(&[("tier", "gold")])).is_empty());
    }
}
