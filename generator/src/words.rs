//! Embedded word lists for names. Invented combinations of common words and names; any resemblance
//! to a real company is a coincidence. Some names carry accents and apostrophes on purpose, so
//! e-mail derivation and replicas meet them.

pub use shared::names::{FIRST_NAMES, LAST_NAMES};

pub const COMPANY_ADJECTIVES: &[&str] = &[
    "Bright", "Blue", "Swift", "Quiet", "Bold", "Clear", "Golden", "Silver", "Northern", "Coastal",
    "Rapid", "Open", "True", "Prime", "Little", "Urban", "Green", "Crimson", "Lucky", "Brave",
    "Clever", "Steady", "Wild", "Solid", "Nimble", "Polar", "Amber", "Cobalt", "Velvet", "Iron",
];

/// Second halves of company names.
pub const COMPANY_NOUNS: &[&str] = &[
    "Ledger", "Harbor", "Pixel", "Forge", "Orbit", "Canvas", "Signal", "Beacon", "Summit",
    "Anchor", "Circuit", "Meadow", "Compass", "Lantern", "Rocket", "Bridge", "Falcon", "Maple",
    "Atlas", "Quill", "Garden", "Vector", "Kernel", "Willow", "Sparrow", "Prism", "Current",
    "Harvest", "Engine", "Otter",
];

/// What a company does, for names like "Nakamura Logistics".
pub const INDUSTRIES: &[&str] = &[
    "Analytics",
    "Logistics",
    "Robotics",
    "Health",
    "Studios",
    "Foods",
    "Energy",
    "Capital",
    "Software",
    "Labs",
    "Systems",
    "Media",
    "Networks",
    "Outdoor",
    "Design",
    "Legal",
];

/// Top-level domains companies pick besides their country's.
pub const GENERIC_TLDS: &[&str] = &["com", "io", "co", "app", "dev"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_non_empty_and_unique() {
        for list in [
            FIRST_NAMES,
            LAST_NAMES,
            COMPANY_ADJECTIVES,
            COMPANY_NOUNS,
            INDUSTRIES,
            GENERIC_TLDS,
        ] {
            assert!(!list.is_empty());
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "duplicate in {list:?}");
        }
    }
}
