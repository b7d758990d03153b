//! A row's service level by every formula: seven values in a fixed array, carried on the wire and
//! printed as the map `formula name → value` that `service_levels` has always been.
//!
//! A map of owned names cost every row seven strings and a tree, built by the daemon and decoded
//! by the CLI; with 500 agent rows that was a tenth of the CLI's work. The serialized form is the
//! same map, in the same (alphabetical) order, so the control protocol's bytes and the JSON output
//! are unchanged.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::Formula;

/// The formulas in the alphabetical order of their names: the order a `BTreeMap` of the names
/// kept, so the serialized map is byte for byte what it was.
const BY_NAME: [Formula; 7] = [
    Formula::AbandonIgnored,
    Formula::AbandonNegative,
    Formula::AbandonPositive,
    Formula::Answered,
    Formula::AsteriskSl2,
    Formula::Offered,
    Formula::OfferedWithOverflow,
];

/// The service level by each formula, `None` where its denominator is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceLevels([Option<f64>; 7]);

fn slot(f: Formula) -> usize {
    match f {
        Formula::AbandonIgnored => 0,
        Formula::AbandonNegative => 1,
        Formula::AbandonPositive => 2,
        Formula::Answered => 3,
        Formula::AsteriskSl2 => 4,
        Formula::Offered => 5,
        Formula::OfferedWithOverflow => 6,
    }
}

impl ServiceLevels {
    /// Each formula's value from `value_of`.
    pub fn from_fn(mut value_of: impl FnMut(Formula) -> Option<f64>) -> ServiceLevels {
        ServiceLevels(BY_NAME.map(&mut value_of))
    }

    /// The value by `formula`.
    #[must_use]
    pub fn get(&self, formula: Formula) -> Option<f64> {
        self.0[slot(formula)]
    }

    /// The value by the formula named `name`; `None` for a name that is no formula.
    #[must_use]
    pub fn by_name(&self, name: &str) -> Option<Option<f64>> {
        Formula::parse(name).map(|f| self.get(f))
    }

    /// (name, value) for every formula, names in alphabetical order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Option<f64>)> + '_ {
        BY_NAME.iter().map(|f| (f.name(), self.get(*f)))
    }
}

impl Serialize for ServiceLevels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(BY_NAME.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ServiceLevels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ServiceLevels, D::Error> {
        struct Levels;
        impl<'de> Visitor<'de> for Levels {
            type Value = ServiceLevels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of service-level formula names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServiceLevels, A::Error> {
                let mut out = ServiceLevels::default();
                // A formula this build does not know (from a newer daemon) is skipped, not refused:
                // the others still read.
                while let Some(FormulaKey(formula)) = map.next_key()? {
                    let value: Option<f64> = map.next_value()?;
                    if let Some(f) = formula {
                        out.0[slot(f)] = value;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Levels)
    }
}

/// A map key read as the formula it names (`None` for an unknown name), without allocating.
struct FormulaKey(Option<Formula>);

impl<'de> Deserialize<'de> for FormulaKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FormulaKey, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = FormulaKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a service-level formula name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<FormulaKey, E> {
                Ok(FormulaKey(Formula::parse(name)))
            }
        }
        d.deserialize_str(Name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sample() -> ServiceLevels {
        ServiceLevels::from_fn(|f| (f != Formula::Answered).then(|| f64::from(slot(f) as u8) / 8.0))
    }

    #[test]
    fn names_are_in_alphabetical_order_and_cover_every_formula() {
        let names: Vec<&str> = BY_NAME.iter().map(|f| f.name()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for f in Formula::ALL {
            assert_eq!(BY_NAME[slot(f)], f);
        }
    }

    #[test]
    fn serialized_as_the_map_of_names_it_replaced() {
        let levels = sample();
        let map: BTreeMap<String, Option<f64>> = Formula::ALL
            .iter()
            .map(|f| (f.name().to_string(), levels.get(*f)))
            .collect();
        assert_eq!(
            serde_json::to_string(&levels).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        assert_eq!(
            rmp_serde::to_vec(&levels).unwrap(),
            rmp_serde::to_vec(&map).unwrap()
        );
        let back: ServiceLevels = rmp_serde::from_slice(&rmp_serde::to_vec(&map).unwrap()).unwrap();
        assert_eq!(back, levels);
        assert_eq!(levels.by_name("answered"), Some(None));
        assert_eq!(levels.by_name("offered"), Some(Some(5.0 / 8.0)));
        assert_eq!(levels.by_name("fastest"), None);
    }

    #[test]
    fn unknown_names_are_skipped() {
        let json = r#"{"offered":0.5,"some_future_formula":0.1}"#;
        let levels: ServiceLevels = serde_json::from_str(json).unwrap();
        assert_eq!(levels.get(Formula::Offered), Some(0.5));
        assert_eq!(levels.iter().filter(|(_, v)| v.is_some()).count(), 1);
    }
}
