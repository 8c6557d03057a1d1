//! The reference data: the plans and countries that `main-db/schema.sql` seeds (a unit test keeps the
//! two in step), with what the generator needs to know about each — seat prices, currencies, exchange
//! rates, sales tax, and how addresses are written there.

use crate::rng::Rng;

/// A row of `plans`. Prices are per seat and month, in US cents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub id: i64,
    pub code: &'static str,
    pub name: &'static str,
    pub seat_price_cents: i64,
    pub max_seats: Option<i32>,
    /// How many users an organization on this plan has in bulk data.
    pub users: (i64, i64),
    /// How common the plan is among organizations.
    pub weight: u64,
}

#[rustfmt::skip]
pub static PLANS: [Plan; 5] = [
    Plan { id: 1, code: "free", name: "Free", seat_price_cents: 0, max_seats: Some(3), users: (1, 3), weight: 25 },
    Plan { id: 2, code: "starter", name: "Starter", seat_price_cents: 900, max_seats: Some(10), users: (2, 10), weight: 30 },
    Plan { id: 3, code: "team", name: "Team", seat_price_cents: 1900, max_seats: Some(50), users: (5, 40), weight: 25 },
    Plan { id: 4, code: "business", name: "Business", seat_price_cents: 3900, max_seats: Some(250), users: (10, 80), weight: 15 },
    Plan { id: 5, code: "enterprise", name: "Enterprise", seat_price_cents: 7900, max_seats: None, users: (30, 150), weight: 5 },
];

pub fn plan(id: i64) -> Option<&'static Plan> {
    PLANS.iter().find(|p| p.id == id)
}

/// A plan, as common as its weight says.
pub fn pick_plan(rng: &mut Rng) -> &'static Plan {
    let weights: Vec<(&'static Plan, u64)> = PLANS.iter().map(|p| (p, p.weight)).collect();
    rng.weighted(&weights).copied().unwrap_or(&PLANS[0])
}

/// A city with its region and a postal-code pattern (`#` a digit, `@` a capital letter, anything
/// else literal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct City {
    pub name: &'static str,
    pub region: &'static str,
    pub postal: &'static str,
}

/// A row of `countries`, plus how to write an address there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Country {
    pub code: &'static str,
    pub name: &'static str,
    pub currency: &'static str,
    /// Units of `currency` per US dollar, times 10,000 (fixed: the data set must not depend on the
    /// day's rates).
    pub usd_rate_e4: i64,
    /// Sales tax on invoices, in basis points (1900 = 19%), and what invoices call it.
    pub tax_bp: i64,
    pub tax_label: &'static str,
    /// `{num}`, `{street}`, `{city}`, `{region}` and `{postal}` are filled in.
    pub address_format: &'static str,
    pub streets: &'static [&'static str],
    pub cities: &'static [City],
    pub tld: &'static str,
    /// The legal suffixes of company names there.
    pub company_suffixes: &'static [&'static str],
    /// How common the country is among organizations.
    pub weight: u64,
}

const fn city(name: &'static str, region: &'static str, postal: &'static str) -> City {
    City {
        name,
        region,
        postal,
    }
}

#[rustfmt::skip]
pub static COUNTRIES: [Country; 10] = [
    Country {
        code: "US", name: "United States", currency: "USD", usd_rate_e4: 10_000, tax_bp: 0, tax_label: "Sales tax",
        address_format: "{num} {street}, {city}, {region} {postal}",
        streets: &["Maple Avenue", "Oak Street", "Market Street", "Pine Road", "Lakeview Drive", "Congress Avenue", "Elm Court"],
        cities: &[city("Austin", "TX", "787##"), city("Denver", "CO", "802##"), city("Portland", "OR", "972##"),
                  city("Boston", "MA", "021##"), city("Chicago", "IL", "606##"), city("Seattle", "WA", "981##")],
        tld: "com", company_suffixes: &["Inc.", "LLC", "Corp."], weight: 35,
    },
    Country {
        code: "CA", name: "Canada", currency: "CAD", usd_rate_e4: 13_600, tax_bp: 500, tax_label: "GST",
        address_format: "{num} {street}, {city}, {region} {postal}",
        streets: &["King Street West", "Granville Street", "Rue Sainte-Catherine", "Jasper Avenue", "Bank Street"],
        cities: &[city("Toronto", "ON", "M5V #@#"), city("Vancouver", "BC", "V6B #@#"),
                  city("Montréal", "QC", "H2X #@#"), city("Calgary", "AB", "T2P #@#")],
        tld: "ca", company_suffixes: &["Inc.", "Ltd."], weight: 8,
    },
    Country {
        code: "GB", name: "United Kingdom", currency: "GBP", usd_rate_e4: 7_900, tax_bp: 2000, tax_label: "VAT",
        address_format: "{num} {street}, {city} {postal}",
        streets: &["High Street", "Station Road", "Victoria Road", "Church Lane", "Park Terrace"],
        cities: &[city("London", "", "EC1V #@@"), city("Manchester", "", "M1 #@@"),
                  city("Edinburgh", "", "EH1 #@@"), city("Bristol", "", "BS1 #@@")],
        tld: "co.uk", company_suffixes: &["Ltd", "plc"], weight: 10,
    },
    Country {
        code: "DE", name: "Germany", currency: "EUR", usd_rate_e4: 9_200, tax_bp: 1900, tax_label: "MwSt.",
        address_format: "{street} {num}, {postal} {city}",
        streets: &["Hauptstraße", "Friedrichstraße", "Schillerstraße", "Gartenweg", "Am Markt"],
        cities: &[city("Berlin", "", "101##"), city("München", "", "803##"),
                  city("Hamburg", "", "203##"), city("Köln", "", "506##")],
        tld: "de", company_suffixes: &["GmbH", "AG", "UG"], weight: 10,
    },
    Country {
        code: "FR", name: "France", currency: "EUR", usd_rate_e4: 9_200, tax_bp: 2000, tax_label: "TVA",
        address_format: "{num} {street}, {postal} {city}",
        streets: &["rue de la République", "avenue Jean Jaurès", "boulevard Voltaire", "rue des Lilas", "place du Marché"],
        cities: &[city("Paris", "", "750##"), city("Lyon", "", "6900#"),
                  city("Nantes", "", "4400#"), city("Bordeaux", "", "3300#")],
        tld: "fr", company_suffixes: &["SAS", "SARL"], weight: 8,
    },
    Country {
        code: "NL", name: "Netherlands", currency: "EUR", usd_rate_e4: 9_200, tax_bp: 2100, tax_label: "BTW",
        address_format: "{street} {num}, {postal} {city}",
        streets: &["Kerkstraat", "Prinsengracht", "Stationsweg", "Molenlaan"],
        cities: &[city("Amsterdam", "", "10## @@"), city("Rotterdam", "", "30## @@"), city("Utrecht", "", "35## @@")],
        tld: "nl", company_suffixes: &["B.V."], weight: 5,
    },
    Country {
        code: "ES", name: "Spain", currency: "EUR", usd_rate_e4: 9_200, tax_bp: 2100, tax_label: "IVA",
        address_format: "{street}, {num}, {postal} {city}",
        streets: &["Calle Mayor", "Avenida de la Constitución", "Calle del Sol", "Paseo de Gracia"],
        cities: &[city("Madrid", "", "280##"), city("Barcelona", "", "080##"),
                  city("Valencia", "", "460##"), city("Sevilla", "", "410##")],
        tld: "es", company_suffixes: &["S.L.", "S.A."], weight: 5,
    },
    Country {
        code: "SE", name: "Sweden", currency: "SEK", usd_rate_e4: 104_000, tax_bp: 2500, tax_label: "Moms",
        address_format: "{street} {num}, {postal} {city}",
        streets: &["Storgatan", "Drottninggatan", "Kungsgatan", "Sveavägen"],
        cities: &[city("Stockholm", "", "11# ##"), city("Göteborg", "", "41# ##"), city("Malmö", "", "21# ##")],
        tld: "se", company_suffixes: &["AB"], weight: 4,
    },
    Country {
        code: "AU", name: "Australia", currency: "AUD", usd_rate_e4: 15_200, tax_bp: 1000, tax_label: "GST",
        address_format: "{num} {street}, {city} {region} {postal}",
        streets: &["George Street", "Collins Street", "Queen Street", "Hay Street"],
        cities: &[city("Sydney", "NSW", "20##"), city("Melbourne", "VIC", "30##"),
                  city("Brisbane", "QLD", "40##"), city("Perth", "WA", "60##")],
        tld: "com.au", company_suffixes: &["Pty Ltd"], weight: 8,
    },
    Country {
        code: "JP", name: "Japan", currency: "JPY", usd_rate_e4: 1_500_000, tax_bp: 1000, tax_label: "Consumption tax",
        address_format: "{num}-{num}-{num} {street}, {city} {postal}",
        streets: &["Shibuya", "Minato", "Chiyoda", "Umeda", "Nakagyo"],
        cities: &[city("Tokyo", "", "1##-####"), city("Osaka", "", "53#-####"), city("Kyoto", "", "60#-####")],
        tld: "jp", company_suffixes: &["K.K."], weight: 7,
    },
];

pub fn country(code: &str) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.code == code)
}

/// A country, as common as its weight says.
pub fn pick_country(rng: &mut Rng) -> &'static Country {
    let weights: Vec<(&'static Country, u64)> = COUNTRIES.iter().map(|c| (c, c.weight)).collect();
    rng.weighted(&weights).copied().unwrap_or(&COUNTRIES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = include_str!("../../main-db/schema.sql");

    /// The `VALUES` rows of the seed `INSERT INTO <table>` in schema.sql, as lists of raw literals.
    fn seed_rows(table: &str) -> Vec<Vec<String>> {
        let start = SCHEMA
            .find(&format!("INSERT INTO {table} "))
            .unwrap_or_else(|| panic!("schema.sql seeds no {table}"));
        let body = &SCHEMA[start..];
        let body = &body[body.find("VALUES").unwrap() + 6..body.find("ON CONFLICT").unwrap()];
        body.split("),")
            .map(|row| {
                row.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(", ")
                    .map(|v| v.trim().to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn plans_match_schema_seed() {
        let rows = seed_rows("plans");
        assert_eq!(rows.len(), PLANS.len());
        for (row, plan) in rows.iter().zip(PLANS.iter()) {
            let price = format!(
                "{}.{:02}",
                plan.seat_price_cents / 100,
                plan.seat_price_cents % 100
            );
            let max = plan.max_seats.map_or("NULL".to_owned(), |m| m.to_string());
            let expected = [
                plan.id.to_string(),
                format!("'{}'", plan.code),
                format!("'{}'", plan.name),
                price,
                max,
            ];
            assert_eq!(row, &expected, "plan {}", plan.code);
        }
    }

    #[test]
    fn countries_match_schema_seed() {
        let rows = seed_rows("countries");
        assert_eq!(rows.len(), COUNTRIES.len());
        for (row, c) in rows.iter().zip(COUNTRIES.iter()) {
            let expected = [
                format!("'{}'", c.code),
                format!("'{}'", c.name),
                format!("'{}'", c.currency),
            ];
            assert_eq!(row, &expected, "country {}", c.code);
            assert!(
                !c.streets.is_empty() && !c.cities.is_empty() && !c.company_suffixes.is_empty()
            );
        }
    }
}
