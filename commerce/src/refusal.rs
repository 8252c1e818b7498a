//! Why a command, or a value in it, is refused: a stable kind (it becomes the problem `type` at
//! the HTTP layer, through `fault::Kind`) and a detail for people. A refused command changes
//! nothing.

/// Why a command was refused at apply. Nothing of it was written. `kind` is stable (it becomes
/// the problem `type` at the HTTP layer); `detail` is for people.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub kind: RejectKind,
    pub detail: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// The command is malformed or breaks a rule on its own.
    Invalid,
    UnknownSku,
    UnknownPriceList,
    UnknownMarket,
    UnknownPromotion,
    /// It contradicts existing state (a SKU owned by another product, a list of another
    /// currency).
    Conflict,
    /// A stock decrease would cut into units held in edge grants (invariant I2).
    HeldInGrants,
    OutOfStock,
    NotSoldInMarket,
    NoPrice,
    Quantity,
    /// The Idempotency-Key was used before for a different request.
    IdempotencyKeyReused,
    /// The Idempotency-Key is past the time it is honoured (`dedup::KEY_TTL_MS`).
    IdempotencyKeyExpired,
}

impl Rejection {
    pub fn new(kind: RejectKind, detail: impl Into<String>) -> Self {
        Rejection {
            kind,
            detail: detail.into(),
        }
    }

    /// A command or value that breaks a rule on its own.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Rejection::new(RejectKind::Invalid, detail)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Rejection {}

impl fault::Fault for Rejection {
    fn kind(&self) -> fault::Kind {
        self.kind.fault()
    }
}

impl RejectKind {
    /// The kind of failure a refusal of this kind is, as every API reports it.
    pub fn fault(self) -> fault::Kind {
        use fault::Kind;
        match self {
            RejectKind::Invalid => Kind::InvalidBody,
            RejectKind::UnknownSku => Kind::UnknownSku,
            RejectKind::UnknownPriceList => Kind::UnknownPriceList,
            RejectKind::UnknownMarket => Kind::UnknownMarket,
            RejectKind::UnknownPromotion => Kind::UnknownPromotion,
            RejectKind::Conflict => Kind::Conflict,
            RejectKind::HeldInGrants => Kind::HeldInGrants,
            RejectKind::OutOfStock => Kind::OutOfStock,
            RejectKind::NotSoldInMarket => Kind::NotSoldInMarket,
            RejectKind::NoPrice => Kind::NoPrice,
            RejectKind::Quantity => Kind::Quantity,
            RejectKind::IdempotencyKeyReused => Kind::IdempotencyKeyReused,
            RejectKind::IdempotencyKeyExpired => Kind::IdempotencyKeyExpired,
        }
    }
}
