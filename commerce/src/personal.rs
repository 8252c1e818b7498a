//! An order's personal data: what identifies or locates the shopper (the recipient's name,
//! address and phone), and the forms it is kept in (I6).
//!
//! A shopper writes it in the clear (`Personal::Plain`); the first process that takes it (an
//! edge, or a core for an order placed through the admin API) seals it for its home region
//! before it is written or sent anywhere (`Personal::Sealed`, made by the `sealing` crate: this
//! crate never sees a key), so that every outbox, log, store and snapshot holds ciphertext
//! that only the home region's cores can open. Orders keep the destination's country in the
//! clear: prices, markets and residency are decided by it. Erasure leaves `Personal::Erased`.
//!
//! Whether a retry under an Idempotency-Key asks for the same address is told without opening
//! it: a sealed value carries a keyed digest of the address (`SealedPersonal::digest`).
//!
//! JSON (the APIs) and the binary formats differ: JSON carries the address flat, as shoppers
//! write it (`{"country", "line1", "city", ...}`), and shows sealed or erased data as a
//! `redacted` object with the reason; a JSON body can only ever give plain data.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::market::Country;
use crate::order::OrderError;

pub const NAME_MAX_BYTES: usize = 200;
pub const ADDRESS_LINE_MAX_BYTES: usize = 200;
pub const CITY_MAX_BYTES: usize = 100;
pub const POSTAL_CODE_MAX_BYTES: usize = 20;
pub const PHONE_MAX_BYTES: usize = 32;
/// Largest sealed value an order may carry: an address at its largest, sealed, with room.
pub const SEALED_MAX_BYTES: usize = 2_048;

/// The personal part of where an order ships to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The recipient.
    pub name: Option<String>,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// For the carrier.
    pub phone: Option<String>,
}

/// What is sealed: an address, versioned, so that its layout can change while old sealed
/// values still open.
impl codec::FirstVersion for Address {
    const FORMAT: codec::Format = codec::Format {
        label: "address",
        version: 1,
    };
}

/// Never the text: what logs, panics and errors print of an address.
impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Address(..)")
    }
}

impl Address {
    /// Checks each field's size. A refusal says the sizes, never the text: refusals reach logs,
    /// and a rejected order's reason is stored and replicated.
    pub fn validate(&self) -> Result<(), OrderError> {
        let field = |name: &str, v: &str, max: usize| {
            if v.trim().is_empty() || v.len() > max {
                Err(OrderError::Address(format!(
                    "{name} must be 1 to {max} bytes (not blank), got {} bytes",
                    v.len()
                )))
            } else {
                Ok(())
            }
        };
        let optional = |name: &str, v: &Option<String>, max: usize| match v {
            Some(v) => field(name, v, max),
            None => Ok(()),
        };
        optional("name", &self.name, NAME_MAX_BYTES)?;
        field("line1", &self.line1, ADDRESS_LINE_MAX_BYTES)?;
        optional("line2", &self.line2, ADDRESS_LINE_MAX_BYTES)?;
        field("city", &self.city, CITY_MAX_BYTES)?;
        field("postal_code", &self.postal_code, POSTAL_CODE_MAX_BYTES)?;
        optional("phone", &self.phone, PHONE_MAX_BYTES)
    }
}

/// When a customer's personal data was erased (`Command::ErasePersonal`): their orders
/// accepted before then are kept with `Personal::Erased`, wherever and whenever they commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub at_ms: i64,
}

impl codec::FirstVersion for Erasure {
    const FORMAT: codec::Format = codec::Format {
        label: "erasure",
        version: 1,
    };
}

impl Erasure {
    /// The customer's epoch under `erasure`, their latest: the time it was made (0 before
    /// any). Their home region keeps their addresses under a key of their epoch, and destroys
    /// that key when an erasure ends the epoch (`KeptAddress`, `Record::EpochEnded`).
    pub fn epoch(erasure: Option<&Erasure>) -> i64 {
        erasure.map_or(0, |e| e.at_ms)
    }

    /// `ship_to` erased, if it is personal data this erasure reaches: of an order accepted at
    /// or before it.
    pub fn reach(&self, accepted_at_ms: i64, ship_to: &mut ShipTo) {
        if accepted_at_ms <= self.at_ms && !matches!(ship_to.personal, Personal::Erased { .. }) {
            ship_to.personal = Personal::Erased { at_ms: self.at_ms };
        }
    }
}

/// How a customer's epoch ended (`Record::EpochEnded`): by the erasure made at `at_ms`, applied
/// at `version`. A home region's keeping keys made after that version hold nothing under the
/// ended epoch (a keep at it is refused from then on), so only older ones are punctured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEnd {
    pub at_ms: i64,
    /// 0: not known (a row written before version 2), as if before every version.
    pub version: u64,
}

impl codec::Versioned for EpochEnd {
    const FORMAT: codec::Format = codec::Format {
        label: "epoch end",
        version: 2,
    };
    /// Version 1 rows held the erasure alone.
    type Previous = Erasure;
    fn migrate(previous: Erasure) -> Self {
        EpochEnd {
            at_ms: previous.at_ms,
            version: 0,
        }
    }
}

/// An order's address as its home region keeps it (`Command::KeepAddresses`): sealed again,
/// under the key of its customer's epoch, by the home region that opened it. It replaces the
/// address the order holds only while that is the same address (equal digests) and the
/// customer's epoch is still `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptAddress {
    pub order_id: crate::OrderId,
    pub epoch: i64,
    pub personal: SealedPersonal,
}

/// Personal data sealed for its home region.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPersonal {
    /// The region whose cores can open it: the residency policy's home of the destination.
    pub home: String,
    /// A digest of the address keyed by the deployment's secret: equal for equal addresses,
    /// so that a retry is told from another request without opening anything, and nothing
    /// without the secret can test a guess against it.
    pub digest: [u8; 16],
    /// The sealed address (a `sealing::Seal`, encoded): opaque here.
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// An order's personal data, as it is held.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Personal {
    /// In the clear: in memory between a shopper and the process that seals it, opened for
    /// its owner at its home region, and in orders stored before sealing (order v1).
    Plain(Box<Address>),
    Sealed(SealedPersonal),
    /// Erased at the customer's request, or past retention, at `at_ms`.
    Erased {
        at_ms: i64,
    },
}

impl fmt::Debug for SealedPersonal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What it is for, not what it holds.
        write!(
            f,
            "SealedPersonal(home {}, {} bytes)",
            self.home,
            self.sealed.len()
        )
    }
}

impl fmt::Debug for Personal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Plain(_) => f.write_str("Plain(..)"),
            Personal::Sealed(s) => write!(f, "Sealed(home {})", s.home),
            Personal::Erased { at_ms } => write!(f, "Erased(at {at_ms})"),
        }
    }
}

impl Personal {
    /// Whether `other` may be the same address as this: equal in the clear, equal digests
    /// when both are sealed. Where the two cannot be compared (one in the clear from a build
    /// before sealing, one erased), they may be.
    pub fn may_equal(&self, other: &Personal) -> bool {
        match (self, other) {
            (Personal::Plain(a), Personal::Plain(b)) => a == b,
            (Personal::Sealed(a), Personal::Sealed(b)) => a.digest == b.digest,
            _ => true,
        }
    }
}

/// Where an order ships to: the country in the clear, the rest personal.
#[derive(Clone, PartialEq, Eq)]
pub struct ShipTo {
    pub country: Country,
    pub personal: Personal,
}

impl fmt::Debug for ShipTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShipTo")
            .field("country", &self.country)
            .field("personal", &self.personal)
            .finish()
    }
}

impl ShipTo {
    pub fn plain(country: Country, address: Address) -> ShipTo {
        ShipTo {
            country,
            personal: Personal::Plain(Box::new(address)),
        }
    }

    /// Checks what can be checked: an address's fields in the clear; a sealed value's size and
    /// home.
    pub fn validate(&self) -> Result<(), OrderError> {
        match &self.personal {
            Personal::Plain(a) => a.validate(),
            Personal::Sealed(s) => {
                crate::id::check_id("region", &s.home)
                    .map_err(|e| OrderError::Address(format!("home region: {e}")))?;
                if s.sealed.is_empty() || s.sealed.len() > SEALED_MAX_BYTES {
                    return Err(OrderError::Address(format!(
                        "a sealed address is 1 to {SEALED_MAX_BYTES} bytes, got {}",
                        s.sealed.len()
                    )));
                }
                Ok(())
            }
            Personal::Erased { .. } => Ok(()),
        }
    }

    /// This, within every bound (`validate`), for the stub of an order refused at commit: an
    /// address's fields cut to their sizes, and sealed data too large for one dropped, as if
    /// erased at `at_ms`.
    pub fn bounded(&self, at_ms: i64) -> ShipTo {
        if self.validate().is_ok() {
            return self.clone();
        }
        let cut = |s: &str, max: usize| crate::catalog::truncate(s, max).to_owned();
        let personal = match &self.personal {
            Personal::Plain(a) => Personal::Plain(Box::new(Address {
                name: a.name.as_deref().map(|n| cut(n, NAME_MAX_BYTES)),
                line1: cut(&a.line1, ADDRESS_LINE_MAX_BYTES),
                line2: a.line2.as_deref().map(|l| cut(l, ADDRESS_LINE_MAX_BYTES)),
                city: cut(&a.city, CITY_MAX_BYTES),
                postal_code: cut(&a.postal_code, POSTAL_CODE_MAX_BYTES),
                phone: a.phone.as_deref().map(|p| cut(p, PHONE_MAX_BYTES)),
            })),
            _ => Personal::Erased { at_ms },
        };
        ShipTo {
            country: self.country,
            personal,
        }
    }

    /// Whether `other` may ship to the same place (`Personal::may_equal`).
    pub fn may_equal(&self, other: &ShipTo) -> bool {
        self.country == other.country && self.personal.may_equal(&other.personal)
    }
}

/// The binary layout (stores, logs, the mesh).
#[derive(Serialize, Deserialize)]
struct Stored<P> {
    country: Country,
    personal: P,
}

/// The JSON form of an address in the clear, as shoppers write it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ShipTo))]
struct PlainJson<S> {
    country: Country,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<S>,
    line1: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line2: Option<S>,
    city: S,
    postal_code: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<S>,
}

/// Why the personal fields of an order are not shown, in JSON.
#[derive(Serialize)]
struct RedactedJson<'a> {
    country: Country,
    redacted: Redacted<'a>,
}

#[derive(Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
enum Redacted<'a> {
    Sealed {
        home_region: &'a str,
        detail: String,
    },
    Erased {
        at_ms: i64,
        detail: &'static str,
    },
}

impl Serialize for ShipTo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return Stored {
                country: self.country,
                personal: &self.personal,
            }
            .serialize(s);
        }
        let redacted = match &self.personal {
            Personal::Plain(a) => {
                return PlainJson {
                    country: self.country,
                    name: a.name.as_deref(),
                    line1: a.line1.as_str(),
                    line2: a.line2.as_deref(),
                    city: a.city.as_str(),
                    postal_code: a.postal_code.as_str(),
                    phone: a.phone.as_deref(),
                }
                .serialize(s);
            }
            Personal::Sealed(sealed) => Redacted::Sealed {
                home_region: &sealed.home,
                detail: format!(
                    "the recipient's name, address and phone are sealed for region {}: readable only there, by their owner",
                    sealed.home
                ),
            },
            Personal::Erased { at_ms } => Redacted::Erased {
                at_ms: *at_ms,
                detail: "the recipient's name, address and phone were erased",
            },
        };
        RedactedJson {
            country: self.country,
            redacted,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShipTo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            let s = Stored::<Personal>::deserialize(d)?;
            return Ok(ShipTo {
                country: s.country,
                personal: s.personal,
            });
        }
        // JSON gives an address in the clear, never a sealed one: what a client sends is sealed
        // here, by the process that takes it.
        let p = PlainJson::<String>::deserialize(d)?;
        Ok(ShipTo::plain(
            p.country,
            Address {
                name: p.name,
                line1: p.line1,
                line2: p.line2,
                city: p.city,
                postal_code: p.postal_code,
                phone: p.phone,
            },
        ))
    }
}

/// One of two forms: the address in the clear (what a shopper sends, and what its owner reads
/// at its home region), or redacted with the reason (read anywhere else, or erased).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ShipTo {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let text = |d: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(d))
        };
        let why = ObjectBuilder::new()
            .property(
                "reason",
                text("`sealed`: readable only at its home region; `erased`.")
                    .enum_values(Some(["sealed", "erased"])),
            )
            .required("reason")
            .property("home_region", text("Where it can be read (sealed)."))
            .property(
                "at_ms",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("When it was erased (unix ms).")),
            )
            .property("detail", text("Why, in words."))
            .required("detail");
        let redacted = ObjectBuilder::new()
            .description(Some(
                "The address kept from this reader: sealed for another region, or erased.",
            ))
            .property("country", <Country as utoipa::PartialSchema>::schema())
            .required("country")
            .property("redacted", why)
            .required("redacted");
        OneOfBuilder::new()
            .item(<PlainJson<String> as utoipa::PartialSchema>::schema())
            .item(redacted)
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ShipTo {}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn address() -> Address {
        Address {
            name: Some("Tan Ah Kow".into()),
            line1: "1 Raffles Place".into(),
            line2: None,
            city: "Singapore".into(),
            postal_code: "048616".into(),
            phone: None,
        }
    }

    fn sg() -> Country {
        Country::new("SG").unwrap()
    }

    #[test]
    fn json_carries_an_address_flat_and_shows_sealed_ones_redacted_with_why() {
        let plain = ShipTo::plain(sg(), address());
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"country": "SG", "name": "Tan Ah Kow", "line1": "1 Raffles Place",
                "city": "Singapore", "postal_code": "048616"})
        );
        assert_eq!(serde_json::from_value::<ShipTo>(json).unwrap(), plain);
        let sealed = ShipTo {
            country: sg(),
            personal: Personal::Sealed(SealedPersonal {
                home: "ap-singapore".into(),
                digest: [1; 16],
                sealed: vec![9; 80],
            }),
        };
        let json = serde_json::to_value(&sealed).unwrap();
        assert_eq!(json["country"], "SG");
        assert_eq!(json["redacted"]["reason"], "sealed");
        assert_eq!(json["redacted"]["home_region"], "ap-singapore");
        assert!(json.get("line1").is_none());
        // A client cannot hand in sealed data (nor any field but the address's).
        assert!(serde_json::from_value::<ShipTo>(json).is_err());
        let erased = ShipTo {
            country: sg(),
            personal: Personal::Erased { at_ms: 5 },
        };
        let json = serde_json::to_value(&erased).unwrap();
        assert_eq!(json["redacted"]["reason"], "erased");
        // Stored, every form reads back as it was.
        for v in [plain, sealed, erased] {
            let bytes = bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap();
            let (back, _): (ShipTo, _) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn debug_output_names_the_form_never_the_text() {
        let shown = format!("{:?}", ShipTo::plain(sg(), address()));
        for secret in ["Tan", "Raffles", "Singapore", "048616"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn retries_compare_addresses_in_the_clear_or_by_digest() {
        let sealed = |d: u8| {
            Personal::Sealed(SealedPersonal {
                home: "h".into(),
                digest: [d; 16],
                sealed: vec![d; 40],
            })
        };
        assert!(sealed(1).may_equal(&sealed(1)));
        assert!(!sealed(1).may_equal(&sealed(2)));
        let mut other = address();
        other.postal_code = "048617".into();
        assert!(!Personal::Plain(Box::new(address())).may_equal(&Personal::Plain(Box::new(other))));
        assert!(
            Personal::Plain(Box::new(address())).may_equal(&Personal::Plain(Box::new(address())))
        );
    }

    #[test]
    fn sizes_are_checked_and_refusals_never_repeat_the_text() {
        let mut a = address();
        a.phone = Some("9".repeat(PHONE_MAX_BYTES + 1));
        let err = a.validate().unwrap_err().to_string();
        assert!(err.contains("phone"), "{err}");
        a.phone = None;
        a.line1 = "  ".into();
        assert!(a.validate().is_err());
        let big = ShipTo {
            country: sg(),
            personal: Personal::Sealed(SealedPersonal {
                home: "h".into(),
                digest: [0; 16],
                sealed: vec![0; SEALED_MAX_BYTES + 1],
            }),
        };
        assert!(big.validate().is_err());
    }
}
