//! Money as integer minor units of an ISO 4217 currency. There is no floating point anywhere in
//! money: amounts are `i64` minor units (cents, yen, fils), arithmetic is checked, and every
//! division names its rounding.

use std::fmt;

/// Largest unit price or discount accepted from outside, in minor units (10^12: ten billion
/// dollars in cents). Anything larger is a typo or an attack, and keeping amounts this small
/// means `unit × quantity` for any allowed quantity fits in an `i64` with room for order sums.
pub const UNIT_AMOUNT_MAX_MINOR: i64 = 1_000_000_000_000;

/// An ISO 4217 currency with its number of minor-unit digits (JPY 0, USD 2, KWD 3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Why a string is not a currency this system knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown currency {0:?}: expected an active ISO 4217 code such as USD, EUR, JPY")]
pub struct UnknownCurrency(pub String);

/// Active ISO 4217 codes and their minor-unit exponents. Funds codes, precious metals and the
/// testing codes are left out on purpose: nobody prices a T-shirt in XAU.
#[rustfmt::skip]
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2),
    ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0),
    ("BMD", 2), ("BND", 2), ("BOB", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2),
    ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHF", 2), ("CLP", 0), ("CNY", 2), ("COP", 2), ("CRC", 2),
    ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2),
    ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2),
    ("GIP", 2), ("GMD", 2), ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2),
    ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2),
    ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2),
    ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2),
    ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2),
    ("NGN", 2), ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2),
    ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2),
    ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2),
    ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2),
    ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2), ("UYU", 2), ("UZS", 2), ("VES", 2),
    ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XOF", 0), ("XPF", 0), ("YER", 2),
    ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// The bytes of a three-letter code of `CURRENCIES`.
fn three(code: &str) -> [u8; 3] {
    let b = code.as_bytes();
    [b[0], b[1], b[2]]
}

impl Currency {
    /// Looks up an ISO 4217 code (upper case, exactly three letters).
    pub fn from_code(code: &str) -> Result<Self, UnknownCurrency> {
        let unknown = || UnknownCurrency(code.chars().take(16).collect());
        // Compared as three-byte arrays, which inline to a few instructions: a lookup runs for
        // every amount decoded.
        let key: [u8; 3] = code.as_bytes().try_into().map_err(|_| unknown())?;
        CURRENCIES
            .binary_search_by(|(c, _)| three(c).cmp(&key))
            .map(|i| Currency {
                code: key,
                exponent: CURRENCIES[i].1,
            })
            .map_err(|_| unknown())
    }

    pub fn code(&self) -> &str {
        // The code is one of the ASCII literals of `CURRENCIES`.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point: 0 for JPY, 2 for USD, 3 for KWD.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// Formats minor units for people: `1999` USD is `19.99`, `1999` JPY is `1999`.
    pub fn format_minor(&self, amount_minor: i64) -> String {
        let e = u32::from(self.exponent);
        if e == 0 {
            return amount_minor.to_string();
        }
        let scale = 10i64.pow(e);
        let sign = if amount_minor < 0 { "-" } else { "" };
        let abs = amount_minor.unsigned_abs();
        let scale = scale.unsigned_abs();
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = e as usize
        )
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, UnknownCurrency> {
        Currency::from_code(s)
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Currency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 4217 currency code")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Currency, E> {
                Currency::from_code(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// An amount of one currency, in its minor units.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.currency.format_minor(self.amount_minor),
            self.currency
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Money arithmetic that would leave `i64`, or that mixes currencies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount overflow")]
    Overflow,
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Money {
            amount_minor,
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Self {
        Money::new(0, currency)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|a| Money::new(a, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    pub fn checked_mul(self, qty: u32) -> Result<Money, MoneyError> {
        self.amount_minor
            .checked_mul(i64::from(qty))
            .map(|a| Money::new(a, self.currency))
            .ok_or(MoneyError::Overflow)
    }
}

/// How a division that does not come out even is rounded to a whole minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// To the nearest unit, halves to the even neighbour (banker's rounding): unbiased over many
    /// lines, the default for discounts.
    #[default]
    HalfEven,
    /// To the nearest unit, halves away from zero (what most people do by hand).
    HalfUp,
    /// Towards zero.
    Down,
    /// Away from zero.
    Up,
}

/// `amount × numerator / denominator`, rounded as asked; `None` when the result leaves `i64` or
/// the denominator is not positive. Computed in `i128`, so the product never overflows.
pub fn mul_div(amount: i64, numerator: i64, denominator: i64, rounding: Rounding) -> Option<i64> {
    if denominator <= 0 {
        return None;
    }
    let n = i128::from(amount) * i128::from(numerator);
    let d = i128::from(denominator);
    let q = n / d; // truncates towards zero
    let r = n % d;
    let rounded = if r == 0 {
        q
    } else {
        let away = if n < 0 { q - 1 } else { q + 1 };
        let twice = 2 * r.abs();
        match rounding {
            Rounding::Down => q,
            Rounding::Up => away,
            Rounding::HalfUp => {
                if twice >= d {
                    away
                } else {
                    q
                }
            }
            Rounding::HalfEven => {
                if twice > d || (twice == d && q % 2 != 0) {
                    away
                } else {
                    q
                }
            }
        }
    };
    i64::try_from(rounded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_code("USD").unwrap()
    }

    #[test]
    fn currency_table_is_sorted_and_exponents_are_right() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(Currency::from_code("JPY").unwrap().exponent(), 0);
        assert_eq!(usd().exponent(), 2);
        assert_eq!(Currency::from_code("KWD").unwrap().exponent(), 3);
        assert!(Currency::from_code("usd").is_err());
        assert!(Currency::from_code("XXX").is_err());
        assert!(Currency::from_code("").is_err());
    }

    #[test]
    fn formats_minor_units() {
        assert_eq!(usd().format_minor(1999), "19.99");
        assert_eq!(usd().format_minor(-5), "-0.05");
        assert_eq!(
            Currency::from_code("JPY").unwrap().format_minor(1999),
            "1999"
        );
        assert_eq!(
            Currency::from_code("KWD").unwrap().format_minor(1500),
            "1.500"
        );
    }

    #[test]
    fn serde_shape_is_the_public_contract() {
        let m = Money::new(1999, usd());
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount_minor":1999,"currency":"USD"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"ABC"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1.5,"currency":"USD"}"#).is_err());
    }

    #[test]
    fn rounding_modes() {
        // 25 × 1/10 = 2.5
        assert_eq!(mul_div(25, 1, 10, Rounding::HalfEven), Some(2));
        assert_eq!(mul_div(35, 1, 10, Rounding::HalfEven), Some(4));
        assert_eq!(mul_div(25, 1, 10, Rounding::HalfUp), Some(3));
        assert_eq!(mul_div(29, 1, 10, Rounding::Down), Some(2));
        assert_eq!(mul_div(21, 1, 10, Rounding::Up), Some(3));
        assert_eq!(mul_div(-25, 1, 10, Rounding::HalfUp), Some(-3));
        assert_eq!(mul_div(-25, 1, 10, Rounding::HalfEven), Some(-2));
        assert_eq!(mul_div(i64::MAX, 2, 1, Rounding::Down), None);
        assert_eq!(mul_div(1, 1, 0, Rounding::Down), None);
    }

    #[test]
    fn checked_arithmetic() {
        let a = Money::new(i64::MAX, usd());
        assert_eq!(
            a.checked_add(Money::new(1, usd())),
            Err(MoneyError::Overflow)
        );
        let jpy = Currency::from_code("JPY").unwrap();
        assert!(matches!(
            Money::new(1, usd()).checked_add(Money::new(1, jpy)),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(
            Money::new(3, usd()).checked_mul(4).unwrap().amount_minor,
            12
        );
    }
}
