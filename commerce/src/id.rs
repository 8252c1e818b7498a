//! Validated identifiers. Every id that enters the system from outside (HTTP, config, the wire) is
//! checked here once, so the rest of the code can treat ids as trusted, bounded, printable keys.

use std::fmt;

/// Longest id in bytes. Ids are store keys and log payload: a bound keeps keys small and lets
/// the key layout reserve space without scanning.
pub const ID_MAX_BYTES: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {ID_MAX_BYTES} bytes")]
    TooLong { kind: &'static str },
    #[error(
        "{kind} may only contain ASCII letters, digits and '-', '_', '.', ':' (found {found:?})"
    )]
    BadChar { kind: &'static str, found: char },
}

/// Checks the common id grammar: 1..=64 bytes of `[A-Za-z0-9._:-]`.
pub fn check_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > ID_MAX_BYTES {
        return Err(IdError::TooLong { kind });
    }
    // Bytes, not chars: every allowed character is ASCII, and ids are checked on every decode.
    match s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    {
        Some(at) => Err(IdError::BadChar {
            kind,
            found: s[at..].chars().next().unwrap_or('?'),
        }),
        None => Ok(()),
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this id is called in error messages.
            pub const KIND: &'static str = $kind;

            /// Validates `s` as this kind of id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id($kind, &s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

    };
}

string_id!(
    /// A product (SPU): what a shopper thinks of as one item, sold as one or more SKUs.
    ProductId,
    "product id"
);
string_id!(
    /// A stock-keeping unit: one sellable variant (colour, size, configuration) of a product.
    SkuId,
    "sku"
);
string_id!(
    /// A price list: prices of one currency, optionally for one customer group and one market.
    PriceListId,
    "price list id"
);
string_id!(
    /// A customer group such as `member` or `wholesale`; price lists and promotions can target one.
    CustomerGroup,
    "customer group"
);
string_id!(
    /// A market: a set of destination countries and the currencies sold into them.
    MarketId,
    "market id"
);
string_id!(
    /// A promotion (line-level or order-level discount).
    PromotionId,
    "promotion id"
);
string_id!(
    /// An order, unique across the mesh (edges prefix their own name).
    OrderId,
    "order id"
);
string_id!(
    /// The shopper or buyer account that placed an order.
    CustomerId,
    "customer id"
);
string_id!(
    /// An edge node, the holder of escrow grants.
    EdgeId,
    "edge id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert!(SkuId::new("TSHIRT-RED-M").is_ok());
        assert!(SkuId::new("a:b.c_d-e").is_ok());
        assert_eq!(SkuId::new(""), Err(IdError::Empty { kind: "sku" }));
        assert_eq!(
            SkuId::new("x".repeat(65)),
            Err(IdError::TooLong { kind: "sku" })
        );
        assert!(matches!(
            SkuId::new("a b"),
            Err(IdError::BadChar { found: ' ', .. })
        ));
        assert!(SkuId::new("ü").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: SkuId = serde_json::from_str("\"S-1\"").unwrap();
        assert_eq!(ok.as_str(), "S-1");
        assert!(serde_json::from_str::<SkuId>("\"S 1\"").is_err());
    }
}
