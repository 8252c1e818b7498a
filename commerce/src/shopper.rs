//! Who is asking, and what that allows: a shopper is named by a verified token (the storefront
//! checks the signature; this crate never sees it), and only the token says which customer they
//! are and which customer group's prices they get. A request may repeat what the token says
//! (clients written before tokens send `customer_group` and `customer_id`), but never more.

use crate::id::{CustomerGroup, CustomerId};
use crate::money::Currency;
use crate::order::{LineRequest, OrderRequest, ShipTo};

/// A signed-in shopper: the customer and group their token names.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Shopper {
    pub customer: CustomerId,
    pub group: Option<CustomerGroup>,
}

/// A request that claims more than the shopper's token grants.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum NotGranted {
    #[error("customer group {asked} is not granted to this shopper (their token grants {granted})")]
    Group {
        asked: CustomerGroup,
        granted: String,
    },
    #[error(
        "customer_id {asked} is not this shopper's: orders are placed for the customer the token names"
    )]
    Customer { asked: CustomerId },
}

impl fault::Fault for NotGranted {
    fn kind(&self) -> fault::Kind {
        match self {
            NotGranted::Group { .. } => fault::Kind::GroupNotGranted,
            NotGranted::Customer { .. } => fault::Kind::CustomerNotGranted,
        }
    }
}

/// The customer group whose prices a request sees: the shopper's (none for an anonymous
/// shopper: public prices). A group asked for must be that one.
pub fn price_group(
    who: Option<&Shopper>,
    asked: Option<&CustomerGroup>,
) -> Result<Option<CustomerGroup>, NotGranted> {
    let granted = who.and_then(|s| s.group.as_ref());
    match asked {
        Some(a) if Some(a) != granted => Err(NotGranted::Group {
            asked: a.clone(),
            granted: granted.map_or_else(|| "public prices only".into(), |g| format!("group {g}")),
        }),
        _ => Ok(granted.cloned()),
    }
}

/// An order as a shopper sends it to the storefront: who it is for comes from their token.
#[derive(Clone, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderForm {
    /// Optional, and only the token's customer.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
    /// Optional, and only the token's group.
    #[serde(default)]
    pub customer_group: Option<CustomerGroup>,
    pub currency: Currency,
    pub lines: Vec<LineRequest>,
    pub ship_to: ShipTo,
}

impl OrderForm {
    /// The order request of `who`, or why the form claims more than their token grants.
    pub fn request_of(self, who: &Shopper) -> Result<OrderRequest, NotGranted> {
        if let Some(asked) = self.customer_id
            && asked != who.customer
        {
            return Err(NotGranted::Customer { asked });
        }
        let customer_group = price_group(Some(who), self.customer_group.as_ref())?;
        Ok(OrderRequest {
            customer_id: who.customer.clone(),
            customer_group,
            currency: self.currency,
            lines: self.lines,
            ship_to: self.ship_to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(g: &str) -> CustomerGroup {
        CustomerGroup::new(g).unwrap()
    }

    fn shopper(g: Option<&str>) -> Shopper {
        Shopper {
            customer: CustomerId::new("c-1").unwrap(),
            group: g.map(group),
        }
    }

    #[test]
    fn only_the_token_grants_a_group() {
        let member = shopper(Some("member"));
        assert_eq!(price_group(None, None), Ok(None));
        assert_eq!(price_group(Some(&member), None), Ok(Some(group("member"))));
        assert_eq!(
            price_group(Some(&member), Some(&group("member"))),
            Ok(Some(group("member")))
        );
        for (who, asked) in [
            (None, "wholesale"),
            (Some(&member), "wholesale"),
            (Some(&shopper(None)), "member"),
        ] {
            let err = price_group(who, Some(&group(asked))).unwrap_err();
            assert_eq!(fault::Fault::kind(&err), fault::Kind::GroupNotGranted);
        }
    }

    #[test]
    fn an_order_is_for_the_tokens_customer_at_the_tokens_group() {
        let form = |body: serde_json::Value| -> OrderForm {
            let mut base = serde_json::json!({"currency": "USD", "lines": [{"sku": "S-1", "qty": 1}],
                "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"}});
            base.as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            serde_json::from_value(base).unwrap()
        };
        let who = shopper(Some("member"));
        let req = form(serde_json::json!({})).request_of(&who).unwrap();
        assert_eq!(req.customer_id, who.customer);
        assert_eq!(req.customer_group, Some(group("member")));
        let same = form(serde_json::json!({"customer_id": "c-1", "customer_group": "member"}));
        assert_eq!(same.request_of(&who).unwrap(), req);
        let other = form(serde_json::json!({"customer_id": "c-2"})).request_of(&who);
        assert!(matches!(other, Err(NotGranted::Customer { .. })));
        let richer = form(serde_json::json!({"customer_group": "wholesale"})).request_of(&who);
        assert!(matches!(richer, Err(NotGranted::Group { .. })));
    }
}
