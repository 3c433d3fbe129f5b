//! Bencode (the dictionary format of rtpengine's NG protocol), decoded under strict limits.
//!
//! Integers are `i<decimal>e`, byte strings `<length>:<bytes>`, lists `l…e`, dictionaries `d…e`
//! with byte-string keys. The decoder refuses what a canonical encoder never writes (leading zeros,
//! `-0`, duplicate keys, bytes after the value) and anything beyond [`Limits`], and never panics:
//! input comes from the network.

use std::collections::BTreeMap;

/// A bencoded value. Dictionaries keep their keys sorted, as the encoding requires on output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `i42e`
    Int(i64),
    /// `4:spam`: bytes, usually but not necessarily UTF-8.
    Bytes(Vec<u8>),
    /// `l…e`
    List(Vec<Value>),
    /// `d…e`
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// A byte string holding `s`.
    pub fn str(s: impl AsRef<str>) -> Self {
        Value::Bytes(s.as_ref().as_bytes().to_vec())
    }

    /// A list of byte strings.
    pub fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Self {
        Value::List(items.into_iter().map(Value::str).collect())
    }

    /// The bytes of a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a byte string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The number of an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries of a dictionary.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value under `key` when this is a dictionary holding it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.get(key.as_bytes())
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (key, value) in entries {
                    encode_bytes(key, out);
                    value.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The encoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Bounds on what [`decode`] accepts; the defaults fit any NG message that fits a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of input.
    pub max_len: usize,
    /// Most nesting of lists and dictionaries (the top level counts as one).
    pub max_depth: usize,
    /// Most values in the whole document (dictionary keys count).
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_len: 65_535,
            max_depth: 16,
            max_items: 8_192,
        }
    }
}

/// Why a bencoded document was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bencode: {kind} at byte {offset}")]
pub struct BencodeError {
    /// The offset in the input where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub kind: BencodeErrorKind,
}

/// What was wrong with a bencoded document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BencodeErrorKind {
    /// The input is longer than [`Limits::max_len`].
    #[error("input longer than the limit")]
    TooLong,
    /// Lists and dictionaries nest deeper than [`Limits::max_depth`].
    #[error("nested deeper than the limit")]
    TooDeep,
    /// More values than [`Limits::max_items`].
    #[error("more values than the limit")]
    TooManyItems,
    /// The input ends inside a value.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A byte that cannot start a value.
    #[error("unexpected byte")]
    UnexpectedByte,
    /// An integer or length that is empty, has leading zeros, is `-0` or does not fit.
    #[error("malformed number")]
    BadNumber,
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a byte string")]
    KeyNotBytes,
    /// The same key twice in one dictionary.
    #[error("duplicate dictionary key")]
    DuplicateKey,
    /// Bytes after the top-level value.
    #[error("trailing bytes after the value")]
    Trailing,
}

/// Decodes exactly one value filling all of `input`.
///
/// # Errors
/// When the input is not one well-formed value within `limits` (see [`BencodeErrorKind`]).
pub fn decode(input: &[u8], limits: &Limits) -> Result<Value, BencodeError> {
    if input.len() > limits.max_len {
        return Err(BencodeError {
            offset: limits.max_len,
            kind: BencodeErrorKind::TooLong,
        });
    }
    let mut decoder = Decoder {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let value = decoder.value(1)?;
    if decoder.pos != input.len() {
        return Err(decoder.error(BencodeErrorKind::Trailing));
    }
    Ok(value)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: &'a Limits,
}

impl Decoder<'_> {
    fn error(&self, kind: BencodeErrorKind) -> BencodeError {
        BencodeError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error(BencodeErrorKind::UnexpectedEnd))
    }

    /// One value at nesting `depth` (recursion is bounded by `max_depth`, so the stack is too).
    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(self.error(BencodeErrorKind::TooManyItems));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let digits = self.until(b'e')?;
                let n = parse_int(digits).ok_or_else(|| self.error(BencodeErrorKind::BadNumber))?;
                self.pos += 1;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' | b'd' if depth > self.limits.max_depth => {
                Err(self.error(BencodeErrorKind::TooDeep))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut entries = BTreeMap::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(self.error(BencodeErrorKind::KeyNotBytes));
                    }
                    self.items += 1;
                    if self.items > self.limits.max_items {
                        return Err(self.error(BencodeErrorKind::TooManyItems));
                    }
                    let key_at = self.pos;
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    if entries.insert(key, value).is_some() {
                        return Err(BencodeError {
                            offset: key_at,
                            kind: BencodeErrorKind::DuplicateKey,
                        });
                    }
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            _ => Err(self.error(BencodeErrorKind::UnexpectedByte)),
        }
    }

    /// The bytes from here up to (not including) `end`; leaves `pos` on `end`.
    fn until(&mut self, end: u8) -> Result<&[u8], BencodeError> {
        let rest = &self.input[self.pos..];
        let n = rest.iter().position(|&b| b == end).ok_or(BencodeError {
            offset: self.input.len(),
            kind: BencodeErrorKind::UnexpectedEnd,
        })?;
        let start = self.pos;
        self.pos += n;
        Ok(&self.input[start..start + n])
    }

    fn bytes(&mut self) -> Result<Vec<u8>, BencodeError> {
        let digits = self.until(b':')?;
        let len = parse_int(digits)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.error(BencodeErrorKind::BadNumber))?;
        self.pos += 1;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(BencodeError {
                offset: self.input.len(),
                kind: BencodeErrorKind::UnexpectedEnd,
            })?;
        let bytes = self.input[self.pos..end].to_vec();
        self.pos = end;
        Ok(bytes)
    }
}

/// A canonical decimal: digits with an optional `-`, no leading zeros, no `-0`, within i64.
fn parse_int(digits: &[u8]) -> Option<i64> {
    let magnitude = digits.strip_prefix(b"-").unwrap_or(digits);
    let canonical = match magnitude {
        [] => false,
        [b'0'] => magnitude.len() == digits.len(),
        [first, ..] => *first != b'0' && magnitude.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(input: &[u8]) -> Result<Value, BencodeErrorKind> {
        decode(input, &Limits::default()).map_err(|e| e.kind)
    }

    #[test]
    fn decodes_and_encodes_the_ng_shapes() {
        let input = b"d7:command4:ping5:flagsl3:foo3:bare4:sizei-42ee";
        let value = dec(input).unwrap();
        assert_eq!(value.get("command").and_then(Value::as_str), Some("ping"));
        assert_eq!(value.get("size").and_then(Value::as_int), Some(-42));
        assert_eq!(value.get("flags"), Some(&Value::strs(["foo", "bar"])));
        assert_eq!(value.encode(), input);
        // Keys come out sorted whatever order they came in.
        assert_eq!(dec(b"d1:bi1e1:ai2ee").unwrap().encode(), b"d1:ai2e1:bi1ee");
        assert_eq!(dec(b"0:").unwrap(), Value::Bytes(vec![]));
        assert_eq!(dec(b"i0e").unwrap(), Value::Int(0));
    }

    #[test]
    fn refuses_what_is_malformed_or_beyond_the_limits() {
        use BencodeErrorKind::*;
        assert_eq!(dec(b""), Err(UnexpectedEnd));
        assert_eq!(dec(b"i12"), Err(UnexpectedEnd));
        assert_eq!(dec(b"5:abc"), Err(UnexpectedEnd));
        assert_eq!(dec(b"99999999999999999999:x"), Err(BadNumber));
        assert_eq!(dec(b"i03e"), Err(BadNumber));
        assert_eq!(dec(b"i-0e"), Err(BadNumber));
        assert_eq!(dec(b"ie"), Err(BadNumber));
        assert_eq!(dec(b"i1x2e"), Err(BadNumber));
        assert_eq!(dec(b"01:a"), Err(BadNumber));
        assert_eq!(dec(b"i9223372036854775808e"), Err(BadNumber));
        assert_eq!(dec(b"di1ei2ee"), Err(KeyNotBytes));
        assert_eq!(dec(b"d1:ai1e1:ai2ee"), Err(DuplicateKey));
        assert_eq!(dec(b"i1ei2e"), Err(Trailing));
        assert_eq!(dec(b"x"), Err(UnexpectedByte));
        assert_eq!(dec(b"le"), Ok(Value::List(vec![])));
        let deep = [b"l".repeat(17), b"e".repeat(17)].concat();
        assert_eq!(dec(&deep), Err(TooDeep));
        let shallow = [b"l".repeat(16), b"e".repeat(16)].concat();
        assert!(dec(&shallow).is_ok());
        let many = [b"l".to_vec(), b"i1e".repeat(9000), b"e".to_vec()].concat();
        assert_eq!(dec(&many), Err(TooManyItems));
        assert_eq!(dec(&vec![b'l'; 70_000]), Err(TooLong));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..6
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&input, &Limits::default());
        }

        #[test]
        fn near_valid_documents_never_panic(value in value(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
            let mut bytes = value.encode();
            if !bytes.is_empty() {
                let at = flip.0 % bytes.len();
                bytes[at] = flip.1;
                bytes.truncate(cut % (bytes.len() + 1));
            }
            let _ = decode(&bytes, &Limits::default());
        }

        #[test]
        fn encoding_round_trips(value in value()) {
            prop_assert_eq!(decode(&value.encode(), &Limits::default()), Ok(value));
        }
    }
}
