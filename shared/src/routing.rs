//! Message keys and partitions.
//!
//! A row's Kafka key is the canonical encoding of its key values (see [`encode_key`]); its partition is
//! chosen from the key with Kafka's own default rule, `murmur2(key) & 0x7fffffff % partitions`, so any
//! Kafka client computes the same partition for the same key. cdc picks partitions itself (rather than
//! leaving it to the client) because it must put a transaction's `B`/`C` frame on every partition that
//! receives a row of that transaction.

use crate::change::Column;

/// Canonical key bytes: the key columns' values, in key order, as a compact JSON array: `[42]`,
/// `[7,"2026-01-01"]`. Each value is the JSON text wal2json printed, except that numbers are in
/// [canonical decimal](canonical_decimal) form, and so is the string of a `numeric`/`decimal` column
/// (wal2json's numeric-as-string mode): the text of a numeric carries its scale, and rows equal by
/// value must get one key, or a change that only rescales a key (`1` → `1.000`) would split into a
/// delete and an upsert on two partitions applied in either order.
pub fn encode_key<'a, I>(columns: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a Column>,
{
    let mut out = Vec::with_capacity(32);
    out.push(b'[');
    for (i, c) in columns.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let raw = c.value.get().trim();
        match raw.as_bytes().first() {
            Some(b'-' | b'0'..=b'9') => {
                out.extend_from_slice(canonical_decimal(raw).as_bytes());
            }
            Some(b'"') if is_decimal_type(&c.type_name) => {
                let inner = &raw[1..raw.len().saturating_sub(1).max(1)];
                out.push(b'"');
                out.extend_from_slice(canonical_decimal(inner).as_bytes());
                out.push(b'"');
            }
            _ => out.extend_from_slice(raw.as_bytes()),
        }
    }
    out.push(b']');
    out
}

/// Whether a PostgreSQL type (as wal2json names it) is `numeric`/`decimal`, whose text keeps a scale.
pub fn is_decimal_type(type_name: &str) -> bool {
    let t = type_name.strip_prefix("pg_catalog.").unwrap_or(type_name);
    t.starts_with("numeric") || t.starts_with("decimal")
}

/// The canonical text of a plain decimal number (`-?digits[.digits]`): no trailing zeros after the
/// point, no point without digits after it, no minus on zero, so `1.500` → `1.5`, `1.000` → `1`,
/// `-0.00` → `0`. Any other text (exponents, `NaN`, words) is returned as it is.
pub fn canonical_decimal(text: &str) -> &str {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty());
    if !plain {
        return text;
    }
    let mut out = text;
    if digits.contains('.') {
        out = out.trim_end_matches('0').trim_end_matches('.');
    }
    if out
        .strip_prefix('-')
        .is_some_and(|d| d.bytes().all(|b| b == b'0'))
    {
        return &out[1..];
    }
    out
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), seed `0x9747b28c`.
///
/// Hand-written because it is 20 lines and the crates that offer murmur2 implement other variants
/// (murmur2A, 64-bit) whose results differ from Kafka's.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` (Kafka's default partitioner for keyed messages).
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        // From Apache Kafka's UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input.as_bytes()), want, "murmur2({input:?})");
        }
    }

    fn col(type_name: &str, value: &str) -> Column {
        Column {
            name: "k".into(),
            type_name: type_name.into(),
            typeoid: None,
            value: serde_json::value::RawValue::from_string(value.into()).unwrap(),
        }
    }

    #[test]
    fn key_encoding_is_compact_json() {
        let key = encode_key([&col("integer", "42"), &col("text", "\"x\"")]);
        assert_eq!(key, br#"[42,"x"]"#.to_vec());
        assert_eq!(encode_key(std::iter::empty()), b"[]".to_vec());
    }

    #[test]
    fn keys_equal_by_value_are_equal_whatever_the_scale() {
        let key = |t: &str, v: &str| String::from_utf8(encode_key([&col(t, v)])).unwrap();
        assert_eq!(key("numeric", "1.000"), "[1]");
        assert_eq!(key("numeric(20,3)", "1.000"), key("numeric", "1"));
        assert_eq!(key("numeric(10,2)", "0.50"), "[0.5]");
        assert_eq!(key("numeric", "-0.00"), "[0]");
        assert_eq!(key("numeric", "100"), "[100]");
        assert_eq!(key("numeric", "\"2.500\""), r#"["2.5"]"#);
        assert_eq!(key("numeric", "\"NaN\""), r#"["NaN"]"#);
        // Text is never rewritten, even when it looks like a number.
        assert_eq!(key("text", "\"2.500\""), r#"["2.500"]"#);
        assert_eq!(key("double precision", "1.5e+21"), "[1.5e+21]");
    }

    #[test]
    fn canonical_decimals() {
        for (text, want) in [
            ("1", "1"),
            ("10", "10"),
            ("1.0", "1"),
            ("1.50", "1.5"),
            ("-1.50", "-1.5"),
            ("-0", "0"),
            ("0.000", "0"),
            ("100.00", "100"),
            ("1.", "1."),
            (".5", ".5"),
            ("1e5", "1e5"),
            ("abc", "abc"),
            ("", ""),
        ] {
            assert_eq!(canonical_decimal(text), want, "{text:?}");
        }
    }

    #[test]
    fn partitions_stay_in_range() {
        for i in 0..1000 {
            let key = format!("[{i}]");
            let p = partition_for(key.as_bytes(), 8);
            assert!((0..8).contains(&p));
        }
        assert_eq!(partition_for(b"anything", 1), 0);
    }
}
