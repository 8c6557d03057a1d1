//! Message keys and partitions.
//!
//! A row's Kafka key is the canonical encoding of its key values (see [`encode_key`]); its partition is
//! chosen from the key with Kafka's own default rule, `murmur2(key) & 0x7fffffff % partitions`, so any
//! Kafka client computes the same partition for the same key. cdc picks partitions itself (rather than
//! leaving it to the client) because it must put a transaction's `B`/`C` frame on every partition that
//! receives a row of that transaction.

use serde_json::value::RawValue;

/// Canonical key bytes: the key columns' raw JSON values, in key order, as a compact JSON array:
/// `[42]`, `[7,"2026-01-01"]`. The values are the text wal2json printed, so the same row always
/// yields the same bytes.
pub fn encode_key<'a, I>(values: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a RawValue>,
{
    let mut out = Vec::with_capacity(32);
    out.push(b'[');
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(v.get().trim().as_bytes());
    }
    out.push(b']');
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

    #[test]
    fn key_encoding_is_compact_json() {
        let a = RawValue::from_string("42".into()).unwrap();
        let b = RawValue::from_string("\"x\"".into()).unwrap();
        assert_eq!(encode_key([&*a, &*b]), br#"[42,"x"]"#.to_vec());
        assert_eq!(encode_key(std::iter::empty()), b"[]".to_vec());
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
