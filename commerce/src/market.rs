//! Markets: which destination countries a seller ships to, and in which currencies it sells
//! there. Price lists and promotions may be limited to one market; an order's destination
//! country must lie in a market that sells its currency.

use std::collections::BTreeSet;
use std::fmt;

use crate::id::MarketId;
use crate::money::Currency;

/// Countries one market may list (all of ISO 3166-1 is under 250).
pub const COUNTRIES_PER_MARKET_MAX: usize = 300;
/// Currencies one market may sell in.
pub const CURRENCIES_PER_MARKET_MAX: usize = 16;

/// An ISO 3166-1 alpha-2 country code such as `SG`, `US`, `CN`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country([u8; 2]);

/// Why a string is not a country code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad country {0:?}: expected an ISO 3166-1 alpha-2 code such as SG, US, CN")]
pub struct BadCountry(pub String);

impl Country {
    pub fn new(code: &str) -> Result<Self, BadCountry> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Country([*a, *b])),
            _ => Err(BadCountry(code.chars().take(8).collect())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters, checked in `new`.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Country {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Country {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Country;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 3166-1 alpha-2 country code")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Country, E> {
                Country::new(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A set of destination countries and the currencies sold into them.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Market {
    pub id: MarketId,
    pub countries: BTreeSet<Country>,
    pub currencies: BTreeSet<Currency>,
}

impl Market {
    pub fn validate(&self) -> Result<(), crate::refusal::Rejection> {
        let bad = crate::refusal::Rejection::invalid;
        if self.countries.is_empty() || self.countries.len() > COUNTRIES_PER_MARKET_MAX {
            return Err(bad(format!(
                "market {}: 1 to {COUNTRIES_PER_MARKET_MAX} countries",
                self.id
            )));
        }
        if self.currencies.is_empty() || self.currencies.len() > CURRENCIES_PER_MARKET_MAX {
            return Err(bad(format!(
                "market {}: 1 to {CURRENCIES_PER_MARKET_MAX} currencies",
                self.id
            )));
        }
        Ok(())
    }

    /// Whether this market ships to `country` and sells there in `currency`.
    pub fn sells(&self, country: Country, currency: Currency) -> bool {
        self.countries.contains(&country) && self.currencies.contains(&currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes() {
        assert_eq!(Country::new("SG").unwrap().as_str(), "SG");
        assert!(Country::new("sg").is_err());
        assert!(Country::new("SGP").is_err());
        assert!(Country::new("").is_err());
        assert!(serde_json::from_str::<Country>("\"S1\"").is_err());
    }

    #[test]
    fn market_sells() {
        let m: Market = serde_json::from_str(
            r#"{"id":"sea","countries":["SG","MY"],"currencies":["SGD","USD"]}"#,
        )
        .unwrap();
        m.validate().unwrap();
        let sgd = Currency::from_code("SGD").unwrap();
        assert!(m.sells(Country::new("SG").unwrap(), sgd));
        assert!(!m.sells(Country::new("US").unwrap(), sgd));
        assert!(!m.sells(
            Country::new("SG").unwrap(),
            Currency::from_code("JPY").unwrap()
        ));
    }
}
