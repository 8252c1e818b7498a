//! OpenAPI schemas of the types whose JSON form is not what their Rust shape says (codes kept
//! as bytes, validated strings), for the HTTP APIs' descriptions. Only with the `openapi`
//! feature; the derives on plain types sit next to them.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::catalog::Category;
use crate::id::{
    CustomerGroup, CustomerId, EdgeId, ID_MAX_BYTES, MarketId, OrderId, PriceListId, ProductId,
    PromotionId, SkuId,
};
use crate::market::Country;
use crate::money::Currency;

/// The id grammar of `id::check_id`, as a regular expression.
const ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,64}$";

macro_rules! id_schemas {
    ($($name:ident),*) => {
        $(impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string(
                    &format!(
                        "A {}: 1 to 64 ASCII letters, digits and '-', '_', '.', ':'.",
                        $name::KIND
                    ),
                    ID_PATTERN,
                    Some(ID_MAX_BYTES),
                )
            }
        }
        impl ToSchema for $name {})*
    };
}

id_schemas!(
    ProductId,
    SkuId,
    PriceListId,
    CustomerGroup,
    MarketId,
    PromotionId,
    OrderId,
    CustomerId,
    EdgeId
);

/// A string schema with its grammar.
pub(crate) fn string(description: &str, pattern: &str, max_length: Option<usize>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(1))
        .max_length(max_length)
        .into()
}

impl PartialSchema for Country {
    fn schema() -> RefOr<Schema> {
        string(
            "An ISO 3166-1 alpha-2 country code such as SG, US, CN.",
            "^[A-Z]{2}$",
            Some(2),
        )
    }
}
impl ToSchema for Country {}

impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        string(
            "An active ISO 4217 currency code such as USD, EUR, JPY.",
            "^[A-Z]{3}$",
            Some(3),
        )
    }
}
impl ToSchema for Currency {}

impl PartialSchema for Category {
    fn schema() -> RefOr<Schema> {
        string(
            "A category path from the root, such as apparel/shoes/running: 1 to 6 segments of \
             1 to 32 lower-case ASCII letters, digits, '-' and '_'.",
            "^[a-z0-9_-]{1,32}(/[a-z0-9_-]{1,32}){0,5}$",
            None,
        )
    }
}
impl ToSchema for Category {}
