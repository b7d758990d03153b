//! The serde visitors behind [`decode_json`](super::decode_json) and
//! [`decode_msgpack`](super::decode_msgpack): each fills events straight from the wire, taking
//! and refusing exactly what `serde_json::Value` takes and refuses, with its error texts; but
//! where a `Value` keeps the last of a key given twice, an event naming a field (or a tag) twice
//! is refused, naming it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};

use super::Decoded;
use crate::event::{Event, EventError, EventLimits, RawEvent, RawTags, RawValue, Slot};

/// A batch allocates room for at most this many results up front, whatever the input announces.
const BATCH_PREALLOC: usize = 1024;

/// What `serde_json::Value` says it expected when it refuses a value.
const EXPECTED_VALUE: &str = "any valid JSON value";

/// A string as the deserializer hands it over.
enum Text<'s, 'de> {
    /// Borrowed from the input: kept without a copy.
    Input(&'de str),
    /// Valid only for the call (unescaped into a scratch buffer).
    Scratch(&'s str),
    Owned(String),
}

impl<'de> Text<'_, 'de> {
    fn into_cow(self) -> Cow<'de, str> {
        match self {
            Text::Input(s) => Cow::Borrowed(s),
            Text::Scratch(s) => Cow::Owned(s.to_owned()),
            Text::Owned(s) => Cow::Owned(s),
        }
    }
}

/// What to make of one value, by its wire type. [`AsValue`] turns it into a serde visitor.
trait OnValue<'de>: Sized {
    type Out;
    /// Null, a boolean or a number.
    fn scalar(self, v: RawValue<'de>) -> Self::Out;
    fn text(self, s: Text<'_, 'de>) -> Self::Out;
    /// Must read every item.
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Out, A::Error>;
    /// Must read every entry, through [`each_entry`].
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error>;
}

/// A visitor that takes the wire types `serde_json::Value` takes (and no others: bytes,
/// `MessagePack` extensions and enums are refused with its error text), handing each to `T`.
struct AsValue<T>(T);

impl<'de, T: OnValue<'de>> DeserializeSeed<'de> for AsValue<T> {
    type Value = T::Out;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Out, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: OnValue<'de>> Visitor<'de> for AsValue<T> {
    type Value = T::Out;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED_VALUE)
    }

    fn visit_bool<E>(self, _: bool) -> Result<T::Out, E> {
        Ok(self.0.scalar(RawValue::Bool))
    }

    fn visit_i64<E>(self, v: i64) -> Result<T::Out, E> {
        Ok(self.0.scalar(RawValue::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<T::Out, E> {
        Ok(self
            .0
            .scalar(i64::try_from(v).map_or(RawValue::Number, RawValue::Int)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<T::Out, E> {
        // `Value` holds only finite floats and reads any other as null.
        Ok(self.0.scalar(if v.is_finite() {
            RawValue::Number
        } else {
            RawValue::Null
        }))
    }

    fn visit_str<E>(self, v: &str) -> Result<T::Out, E> {
        Ok(self.0.text(Text::Scratch(v)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<T::Out, E> {
        Ok(self.0.text(Text::Input(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<T::Out, E> {
        Ok(self.0.text(Text::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<T::Out, E> {
        Ok(self.0.scalar(RawValue::Null))
    }

    fn visit_unit<E>(self) -> Result<T::Out, E> {
        Ok(self.0.scalar(RawValue::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T::Out, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T::Out, A::Error> {
        self.0.seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T::Out, A::Error> {
        self.0.map(map)
    }
}

/// Calls `entry` with each key of a map; it must read that key's value. Keys are read as
/// `serde_json::Value` reads them, which differs between the first key and the others (it
/// matters for `MessagePack`, whose keys need not be strings): see [`Key`].
fn each_entry<'de, A, F>(mut map: A, mut entry: F) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(Cow<'de, str>, &mut A) -> Result<(), A::Error>,
{
    let mut key = map.next_key_seed(Key::First)?;
    while let Some(k) = key {
        entry(k, &mut map)?;
        key = map.next_key_seed(Key::Next)?;
    }
    Ok(())
}

/// A key of a map, read as `Value` reads it.
#[derive(Clone, Copy)]
enum Key {
    /// The first key: a string only.
    First,
    /// Any later key (read as a `String`): a string, or bytes that are UTF-8.
    Next,
}

impl Key {
    /// The text of a key given as bytes: the wrong type for a first key, else the bytes if they
    /// are UTF-8. The errors are those of `Value`.
    fn utf8<E: de::Error>(self, v: &[u8]) -> Result<&str, E> {
        match self {
            Key::First => Err(E::invalid_type(Unexpected::Bytes(v), &self)),
            Key::Next => {
                std::str::from_utf8(v).map_err(|_| E::invalid_value(Unexpected::Bytes(v), &self))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        match self {
            Key::First => d.deserialize_str(self),
            Key::Next => d.deserialize_string(self),
        }
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Key::First => "a string key",
            Key::Next => "a string",
        })
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Cow<'de, str>, E> {
        self.utf8(v).map(|s| Cow::Owned(s.to_owned()))
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Cow<'de, str>, E> {
        self.utf8(v).map(Cow::Borrowed)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Cow<'de, str>, E> {
        match self {
            Key::First => self.visit_bytes(&v),
            Key::Next => match String::from_utf8(v) {
                Ok(s) => Ok(Cow::Owned(s)),
                Err(e) => Err(E::invalid_value(Unexpected::Bytes(&e.into_bytes()), &self)),
            },
        }
    }
}

/// Reads past a value, checking it as `Value` would.
struct Skip;

impl<'de> OnValue<'de> for Skip {
    type Out = ();

    fn scalar(self, _: RawValue<'de>) {}

    fn text(self, _: Text<'_, 'de>) {}

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(AsValue(Skip))?.is_some() {}
        Ok(())
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        each_entry(map, |_, map| map.next_value_seed(AsValue(Skip)))
    }
}

/// The value of an event field (and of a tag).
struct Plain;

impl<'de> OnValue<'de> for Plain {
    type Out = RawValue<'de>;

    fn scalar(self, v: RawValue<'de>) -> RawValue<'de> {
        v
    }

    fn text(self, s: Text<'_, 'de>) -> RawValue<'de> {
        RawValue::Str(s.into_cow())
    }

    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawValue<'de>, A::Error> {
        Skip.seq(seq).map(|()| RawValue::Array)
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<RawValue<'de>, A::Error> {
        Skip.map(map).map(|()| RawValue::Object)
    }
}

/// The value of `tags`: an object's entries are kept.
struct Tags;

impl<'de> OnValue<'de> for Tags {
    type Out = RawTags<'de>;

    fn scalar(self, v: RawValue<'de>) -> RawTags<'de> {
        RawTags::Other { got: v.type_name() }
    }

    fn text(self, _: Text<'_, 'de>) -> RawTags<'de> {
        RawTags::Other { got: "a string" }
    }

    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawTags<'de>, A::Error> {
        Skip.seq(seq).map(|()| RawTags::Other { got: "an array" })
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<RawTags<'de>, A::Error> {
        let mut entries = Vec::new();
        each_entry(map, |key, map| {
            entries.push((key, map.next_value_seed(AsValue(Plain))?));
            Ok(())
        })?;
        Ok(RawTags::Object(entries))
    }
}

/// One event: a map, validated; any other value is refused as not an object.
struct Item<'l> {
    limits: &'l EventLimits,
}

impl<'de> OnValue<'de> for Item<'_> {
    type Out = Result<Event, EventError>;

    fn scalar(self, v: RawValue<'de>) -> Self::Out {
        Err(EventError::NotAnObject { got: v.type_name() })
    }

    fn text(self, _: Text<'_, 'de>) -> Self::Out {
        Err(EventError::NotAnObject { got: "a string" })
    }

    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Out, A::Error> {
        Skip.seq(seq)
            .map(|()| Err(EventError::NotAnObject { got: "an array" }))
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error> {
        let mut raw = RawEvent::default();
        each_entry(map, |key, map| {
            // A slot filled already: the key is given twice, which `validate` refuses.
            let repeated = match raw.slot(&key) {
                Slot::Value(value) => value
                    .replace(map.next_value_seed(AsValue(Plain))?)
                    .is_some(),
                Slot::Tags(tags) => tags.replace(map.next_value_seed(AsValue(Tags))?).is_some(),
                Slot::Unknown => {
                    map.next_value_seed(AsValue(Skip))?;
                    raw.unknown_key(key);
                    return Ok(());
                }
            };
            if repeated {
                raw.repeated_key(key);
            }
            Ok(())
        })?;
        Ok(raw.validate(self.limits))
    }
}

/// A whole line or frame: an array is a batch, anything else one event.
pub(super) struct Message<'l> {
    pub(super) limits: &'l EventLimits,
    pub(super) max_batch: usize,
}

impl<'de> DeserializeSeed<'de> for Message<'_> {
    type Value = Decoded;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Decoded, D::Error> {
        AsValue(self).deserialize(d)
    }
}

impl<'de> OnValue<'de> for Message<'_> {
    type Out = Decoded;

    fn scalar(self, v: RawValue<'de>) -> Decoded {
        Decoded::One(
            Item {
                limits: self.limits,
            }
            .scalar(v),
        )
    }

    fn text(self, s: Text<'_, 'de>) -> Decoded {
        Decoded::One(
            Item {
                limits: self.limits,
            }
            .text(s),
        )
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Decoded, A::Error> {
        let Message { limits, max_batch } = self;
        // MessagePack announces the length: a batch known to be too large is not validated.
        let announced = seq.size_hint();
        let mut events = 0;
        if announced.is_none_or(|n| n <= max_batch) {
            let mut items = Vec::with_capacity(announced.unwrap_or(0).min(BATCH_PREALLOC));
            while items.len() < max_batch {
                match seq.next_element_seed(AsValue(Item { limits }))? {
                    Some(result) => items.push(result),
                    None => return Ok(Decoded::Batch(items)),
                }
            }
            // At the limit: the batch is whole unless something follows.
            if seq.next_element_seed(AsValue(Skip))?.is_none() {
                return Ok(Decoded::Batch(items));
            }
            events = items.len() + 1;
        }
        // Too large: the rest is only counted (and checked, as any input is).
        while seq.next_element_seed(AsValue(Skip))?.is_some() {
            events += 1;
        }
        Ok(Decoded::TooLarge { events })
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Decoded, A::Error> {
        Item {
            limits: self.limits,
        }
        .map(map)
        .map(Decoded::One)
    }
}
