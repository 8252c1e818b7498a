//! An order's personal data sealed for its home region, and opened there (I6).
//!
//! The residency policy (`Residency`, from the `[personal_data]` section of an edge's or a
//! core's config) names each destination country's home region. `PersonalSealer` seals an
//! address in the clear to the newest key of that region (`public.keys`, which every node
//! holds), with a digest of it keyed by the deployment's secret so that a retry is known
//! without opening anything; `PersonalOpener`, at a core of the home region, opens it for its
//! owner. Everywhere else it stays sealed, and the APIs show it redacted with the reason.
//!
//! The associated data binds a sealed address to its customer: moved to another customer's
//! order, it does not open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use commerce::personal::{Address, Personal, SealedPersonal, ShipTo};
use commerce::{Country, CustomerId};

use crate::keys::{FileKeys, KeyError, PublicKeys};
use crate::sealed::{OpenError, Opener, Seal, Sealer};
use crate::shred::{KeepingKeys, KeptError, ShredKeys};
use crate::suite::Suite;

/// The residency policy as a config file gives it (`[personal_data]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResidencySettings {
    /// Where the key files are: `public.keys` (every node), `<region>.keys` (that region's
    /// cores). Relative to the config file; by default `keys` beside the certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_dir: Option<PathBuf>,
    /// The home region of every country `homes` does not name: by default this node's region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Countries (ISO 3166-1 alpha-2) whose shoppers' data is kept in another region:
    /// `CN = "cn-shanghai"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub homes: BTreeMap<Country, String>,
    /// The cipher a region's data is sealed with, `aes-256-gcm` (the default) or `sm4-gcm`:
    /// `cn-shanghai = "sm4-gcm"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub suites: BTreeMap<String, String>,
    /// Past this age (ms) an order's personal data is erased by the cores (none by default:
    /// kept until its customer's erasure). At least 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    /// The length (ms) of the periods a home region's keeping keys have (`shred`), when a core
    /// makes its region's file: retention destroys a period's key once all of it is past
    /// `retention_ms`. One day by default; at least 1000 (periods shorter than an hour are for
    /// tests: a key is derived by hashing forward from the oldest period kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_period_ms: Option<u64>,
    /// A home region's core makes its region a new key (`keys rotate`) when the newest is
    /// older than this (ms), in its keys directory; none by default (rotation by hand). Where
    /// that directory is not shared, copy `public.keys` to every node after each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intake_key_rotate_ms: Option<u64>,
    /// A region key that a newer one replaced is destroyed (`keys retire`) by its region's
    /// core once the newer one is this old (ms), nothing sealed to it has arrived for as long,
    /// and everything sealed to it is kept under the keeping keys: from then on nothing sealed
    /// to it at intake (edge outboxes, Raft logs) opens anywhere. Seven days by default; at
    /// least 1000. An edge's outbox older than this loses its addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intake_key_grace_ms: Option<u64>,
    /// Whether a home region's core keeps the addresses sealed for it under its keeping keys
    /// (the default). Off only while a group is being upgraded from a build before keeping:
    /// keeping is a proposal that such a build cannot read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keeping: Option<bool>,
    /// Past this many nodes in its newest tree (each erased epoch adds up to 128, some 13 KB
    /// of file), a home region's core compacts its keeping keys: it begins a new tree, keeps
    /// every address again in it, and drops the old one (`shred`). 65,536 by default (some
    /// 7 MB, 500 erasures); at least 256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keeping_tree_nodes_max: Option<usize>,
    /// Leaves addresses in the clear: only in a build made to measure what sealing costs (the
    /// `measure-plaintext` feature, which no release has), and only on a node whose every
    /// listener is on a loopback address (`check_listeners`).
    #[cfg(feature = "measure-plaintext")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub plaintext_on_loopback: bool,
}

impl ResidencySettings {
    /// Takes a relative `keys_dir` from the config file's directory.
    pub fn resolve(&mut self, base: &Path) {
        if let Some(dir) = &mut self.keys_dir {
            util::config::resolve(base, dir);
        }
    }

    /// Refuses `plaintext_on_loopback` on a node with a listener off loopback.
    pub fn check_listeners(
        &self,
        listeners: &[std::net::SocketAddr],
    ) -> Result<(), util::config::Invalid> {
        if !self.plaintext() {
            return Ok(());
        }
        match listeners.iter().find(|l| !l.ip().is_loopback()) {
            Some(l) => Err(util::config::Invalid::at(
                "personal_data.plaintext_on_loopback",
                format!(
                    "personal data is left in the clear only on a node that listens on loopback addresses alone, and {l} is not one"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether addresses are left in the clear (`plaintext_on_loopback`).
    fn plaintext(&self) -> bool {
        #[cfg(feature = "measure-plaintext")]
        return self.plaintext_on_loopback;
        #[cfg(not(feature = "measure-plaintext"))]
        false
    }

    /// What the types cannot say: region names, and suites that exist.
    pub fn check(&self) -> Result<(), util::config::Invalid> {
        let region = |key: &str, r: &str| {
            crate::keys::KeyId::new(r, 1)
                .map(|_| ())
                .map_err(|e| util::config::Invalid::at(key, e.to_string()))
        };
        if let Some(h) = &self.home {
            region("personal_data.home", h)?;
        }
        for (key, ms) in [
            ("personal_data.retention_ms", self.retention_ms),
            ("personal_data.key_period_ms", self.key_period_ms),
            (
                "personal_data.intake_key_rotate_ms",
                self.intake_key_rotate_ms,
            ),
            (
                "personal_data.intake_key_grace_ms",
                self.intake_key_grace_ms,
            ),
        ] {
            if ms.is_some_and(|ms| ms < 1_000) {
                return Err(util::config::Invalid::at(key, "at least 1000"));
            }
        }
        if self
            .intake_key_grace_ms
            .is_some_and(|ms| ms < INTAKE_KEY_GRACE_MIN_MS)
        {
            return Err(util::config::Invalid::at(
                "personal_data.intake_key_grace_ms",
                format!(
                    "at least {INTAKE_KEY_GRACE_MIN_MS}: edges read public keys every {} s",
                    KEYS_POLL.as_secs()
                ),
            ));
        }
        if self.keeping_tree_nodes_max.is_some_and(|n| n < 256) {
            return Err(util::config::Invalid::at(
                "personal_data.keeping_tree_nodes_max",
                "at least 256: two erasures' worth",
            ));
        }
        for (country, h) in &self.homes {
            region(&format!("personal_data.homes.{country}"), h)?;
        }
        for (r, suite) in &self.suites {
            region("personal_data.suites", r)?;
            if Suite::named(suite).is_none() {
                return Err(util::config::Invalid::at(
                    &format!("personal_data.suites.{r}"),
                    format!("{suite:?} is no cipher suite (aes-256-gcm, sm4-gcm)"),
                ));
            }
        }
        Ok(())
    }
}

/// Why a residency policy or its keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("personal_data.suites.{region}: {suite:?} is no cipher suite (aes-256-gcm, sm4-gcm)")]
    Suite { region: String, suite: String },
    #[error(
        "personal_data: region {0} is a home region but public.keys has no key of it: run `tradewind keys init` or `keys rotate --region {0}` and give every node the new public.keys"
    )]
    NoKey(String),
    #[error("personal_data: {0}")]
    Keys(#[from] KeyError),
}

/// Every country's home region, and each region's cipher suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residency {
    plaintext: bool,
    home: String,
    homes: BTreeMap<Country, String>,
    suites: BTreeMap<String, Suite>,
}

impl Residency {
    /// The policy of `settings` at a node of `region` (the default home).
    pub fn new(settings: &ResidencySettings, region: &str) -> Result<Residency, PolicyError> {
        let suites = settings
            .suites
            .iter()
            .map(|(region, name)| {
                Suite::named(name)
                    .map(|s| (region.clone(), s))
                    .ok_or_else(|| PolicyError::Suite {
                        region: region.clone(),
                        suite: name.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Residency {
            plaintext: settings.plaintext(),
            home: settings.home.clone().unwrap_or_else(|| region.to_owned()),
            homes: settings.homes.clone(),
            suites,
        })
    }

    /// The region whose cores keep the personal data of shoppers shipping to `country`.
    pub fn home_of(&self, country: Country) -> &str {
        self.homes.get(&country).unwrap_or(&self.home)
    }

    /// The cipher suite `region`'s data is sealed with.
    pub fn suite_of(&self, region: &str) -> Suite {
        self.suites.get(region).copied().unwrap_or(Suite::Aes256Gcm)
    }

    /// Every home region the policy names.
    pub fn homes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.home.as_str()).chain(self.homes.values().map(String::as_str))
    }
}

/// The key files' directory: the one the settings name, or `keys` in `certs_dir`.
pub fn keys_dir(settings: &ResidencySettings, certs_dir: &Path) -> PathBuf {
    settings
        .keys_dir
        .clone()
        .unwrap_or_else(|| certs_dir.join("keys"))
}

/// What a sealed address is bound to: its customer.
fn aad(customer: &CustomerId) -> Vec<u8> {
    let mut aad = b"tradewind ship-to v1\0".to_vec();
    aad.extend_from_slice(customer.as_str().as_bytes());
    aad
}

/// Why an address was not sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The address itself is refused (sizes): the shopper's to fix.
    #[error(transparent)]
    Invalid(#[from] commerce::order::OrderError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

/// The sealers of the current keys, one per home region.
struct Current {
    public: PublicKeys,
    sealers: BTreeMap<String, Arc<Sealer>>,
}

/// Seals addresses for their home regions.
pub struct PersonalSealer {
    residency: Residency,
    dir: PathBuf,
    digest: ring::hmac::Key,
    current: RwLock<Current>,
    /// Values one data key (one HPKE context, `Sealer`) seals before a new one is made.
    data_key_values: u64,
}

/// Values one data key seals, at most (`PersonalSealer`): a new HPKE context then, one key
/// exchange (about 150 µs), so that no data key protects more than this many addresses.
pub const DATA_KEY_VALUES_MAX: u64 = 1 << 20;

impl std::fmt::Debug for PersonalSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalSealer")
            .field("residency", &self.residency)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PersonalSealer {
    /// A sealer for `residency` with the public keys in `dir`, and digests keyed by the
    /// deployment's `secret`; refused when a home region has no key.
    pub fn new(
        residency: Residency,
        dir: &Path,
        secret: &[u8; 32],
    ) -> Result<PersonalSealer, PolicyError> {
        let deployment = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let derived = ring::hmac::sign(&deployment, b"tradewind address digests v1");
        let current = Self::sealers(&residency, PublicKeys::load(dir)?)?;
        Ok(PersonalSealer {
            residency,
            dir: dir.to_path_buf(),
            digest: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
            current: RwLock::new(current),
            data_key_values: DATA_KEY_VALUES_MAX,
        })
    }

    fn sealers(residency: &Residency, public: PublicKeys) -> Result<Current, PolicyError> {
        let mut sealers = BTreeMap::new();
        for home in residency.homes() {
            if sealers.contains_key(home) {
                continue;
            }
            let (id, key) = public
                .newest(home)
                .map_err(|_| PolicyError::NoKey(home.to_owned()))?;
            let sealer = Sealer::new(&id, &key, residency.suite_of(home))?;
            sealers.insert(home.to_owned(), Arc::new(sealer));
        }
        Ok(Current { public, sealers })
    }

    /// Reads `public.keys` again: after a rotation, addresses are sealed to the new keys. A
    /// file that does not load leaves the keys in use.
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let public = PublicKeys::load(&self.dir)?;
        let changed = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            self.residency.homes().any(|h| {
                let newest = public.newest(h).ok().map(|(id, _)| id);
                current.sealers.get(h).map(|s| s.key().clone()) != newest
            })
        };
        if changed {
            let next = Self::sealers(&self.residency, public)?;
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        }
        Ok(changed)
    }

    /// The key id each home region's data is sealed to now.
    pub fn keys(&self) -> Vec<String> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current
            .sealers
            .values()
            .map(|s| s.key().to_string())
            .collect()
    }

    pub fn residency(&self) -> &Residency {
        &self.residency
    }

    /// The keyed digest of `customer`'s address, encoded as `plain`: bound to the customer, so
    /// that equal digests never tie two customers' orders together.
    fn digest(&self, customer: &CustomerId, plain: &[u8]) -> [u8; 16] {
        let mut mac = ring::hmac::Context::with_key(&self.digest);
        mac.update(customer.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(plain);
        let tag = mac.sign();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }

    /// Seals `ship_to`'s personal data for its home region, when it is in the clear (after
    /// checking it); sealed or erased data is left as it is.
    pub fn seal(&self, customer: &CustomerId, ship_to: &mut ShipTo) -> Result<(), SealError> {
        let address = match &ship_to.personal {
            Personal::Plain(address) => address,
            Personal::Sealed(s) => {
                let home = self.residency.home_of(ship_to.country);
                if s.home != home {
                    // Taken all the same (the shopper has an answer): said loudly, so that
                    // an operator gives every node the same policy.
                    tracing::warn!(sealed_for = %s.home, policy_home = %home, country = %ship_to.country, "an address sealed for another home region than this node's residency policy names: give every node the same [personal_data]");
                }
                return Ok(());
            }
            Personal::Erased { .. } => return Ok(()),
        };
        address.validate()?;
        if self.residency.plaintext {
            return Ok(());
        }
        let home = self.residency.home_of(ship_to.country);
        let sealer = self.sealer_for(home)?;
        let plain = codec::encode(&**address)?;
        let sealed = sealer.seal(&aad(customer), &plain);
        ship_to.personal = Personal::Sealed(SealedPersonal {
            home: home.to_owned(),
            digest: self.digest(customer, &plain),
            sealed: codec::encode(&sealed)?,
        });
        Ok(())
    }

    /// The sealer of `home`'s newest key, with a new data key once the one in use has sealed
    /// `data_key_values`.
    fn sealer_for(&self, home: &str) -> Result<Arc<Sealer>, SealError> {
        let sealer = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                current
                    .sealers
                    .get(home)
                    .ok_or_else(|| KeyError::NoRegion(home.to_owned()))?,
            )
        };
        if sealer.sealed() < self.data_key_values {
            return Ok(sealer);
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let now = current
            .sealers
            .get(home)
            .ok_or_else(|| KeyError::NoRegion(home.to_owned()))?;
        if now.sealed() < self.data_key_values {
            // Another thread made the new one first.
            return Ok(Arc::clone(now));
        }
        let fresh = Arc::new(Sealer::new(
            now.key(),
            &current.public.newest(home)?.1,
            self.residency.suite_of(home),
        )?);
        current.sealers.insert(home.to_owned(), Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Seals every address in `items` (`Command::ship_tos_mut`).
    pub fn seal_all(&self, items: Vec<(&CustomerId, &mut ShipTo)>) -> Result<(), SealError> {
        for (customer, ship_to) in items {
            self.seal(customer, ship_to)?;
        }
        Ok(())
    }
}

/// Why a sealed address did not open at its home region.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("a sealed address that is not one: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("sealed to key {key}, which is not of its home region {home}")]
    Misfiled { key: String, home: String },
    #[error("kept: {0}")]
    Kept(#[from] KeptError),
    #[error("kept under keeping keys, and this region's keeping key file is not loaded")]
    NoKeepingKeys,
}

/// Opens the addresses sealed for one region, at its cores: sealed at intake to the region's
/// keys, or kept under its keeping keys.
#[derive(Clone)]
pub struct PersonalOpener {
    region: String,
    opener: Opener,
    shred: Option<Arc<dyn KeepingKeys>>,
}

impl PersonalOpener {
    /// The opener of `region` with its key file in `dir`, and its keeping keys, if any.
    pub fn load(
        dir: &Path,
        region: &str,
        shred: Option<Arc<dyn KeepingKeys>>,
    ) -> Result<PersonalOpener, KeyError> {
        Ok(PersonalOpener::new(
            region,
            Arc::new(FileKeys::load(dir, region)?),
            shred,
        ))
    }

    pub fn new(
        region: &str,
        keys: Arc<dyn crate::keys::KeyProvider>,
        shred: Option<Arc<dyn KeepingKeys>>,
    ) -> PersonalOpener {
        PersonalOpener {
            region: region.to_owned(),
            opener: Opener::new(keys),
            shred,
        }
    }

    /// The address in `s`, sealed for this region, `customer`'s.
    fn address(&self, customer: &CustomerId, s: &SealedPersonal) -> Result<Address, UnsealError> {
        let plain = match codec::decode::<Seal>(&s.sealed)? {
            Seal::Intake(sealed) => {
                if sealed.key.region() != s.home {
                    return Err(UnsealError::Misfiled {
                        key: sealed.key.to_string(),
                        home: s.home.clone(),
                    });
                }
                self.opener.open(&sealed, &aad(customer))?
            }
            Seal::Kept(kept) => self
                .shred
                .as_ref()
                .ok_or(UnsealError::NoKeepingKeys)?
                .open(&kept, customer.as_str(), &aad(customer))?,
        };
        Ok(codec::decode(&plain)?)
    }

    /// `ship_to` with its personal data in the clear, when it is sealed for this region (and
    /// opens); any other as it is.
    pub fn open(&self, customer: &CustomerId, ship_to: &mut ShipTo) -> Result<(), UnsealError> {
        let Personal::Sealed(s) = &ship_to.personal else {
            return Ok(());
        };
        if s.home != self.region {
            return Ok(());
        }
        let address = self.address(customer, s)?;
        ship_to.personal = Personal::Plain(Box::new(address));
        Ok(())
    }

    /// `s`, sealed for this region, as it keeps it: under the keeping key of `customer` at
    /// `epoch` for the period of `accepted_at_ms`, in the newest tree, with `suite`. `None` when it
    /// is kept so already, or is another region's.
    pub fn keep(
        &self,
        customer: &CustomerId,
        accepted_at_ms: i64,
        epoch: i64,
        suite: Suite,
        s: &SealedPersonal,
    ) -> Result<Option<SealedPersonal>, UnsealError> {
        if s.home != self.region {
            return Ok(None);
        }
        let shred = self.shred.as_ref().ok_or(UnsealError::NoKeepingKeys)?;
        if let Seal::Kept(k) = codec::decode::<Seal>(&s.sealed)?
            && k.epoch == epoch
            && k.generation == shred.generation()
        {
            return Ok(None);
        }
        let plain = codec::encode(&self.address(customer, s)?)?;
        let kept = shred.seal(
            shred.period_of(accepted_at_ms),
            customer.as_str(),
            epoch,
            suite,
            &aad(customer),
            &plain,
        )?;
        Ok(Some(SealedPersonal {
            home: s.home.clone(),
            digest: s.digest,
            sealed: Seal::Kept(kept).encode()?,
        }))
    }
}

/// Why a node's personal data keys did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "region {region} is a home region in personal_data, and its cores open what is sealed for it, but {region}.keys did not load: {source}"
    )]
    NoPrivate { region: String, source: KeyError },
    #[error(
        "region {region} is a home region in personal_data, and its cores keep what is sealed for it, but {region}.shred (its keeping keys) did not load: {source}"
    )]
    NoKeeping { region: String, source: KeyError },
}

/// What a node holds of the personal data keys: the sealer (every node) and, at a core of a
/// home region, its opener. Both are read again when their files change (a rotation).
pub struct PersonalData {
    pub sealer: PersonalSealer,
    /// `public.keys` as last read.
    public: std::sync::Mutex<Stamp>,
    region: String,
    opener: RwLock<Option<(Stamp, PersonalOpener)>>,
    /// This region's keeping keys, where it is a home region: read once, and then changed only
    /// here (each change written to the file first).
    shred: Option<Arc<dyn KeepingKeys>>,
}

/// When a key file was last changed, and its size: what tells a rotation.
type Stamp = Option<(std::time::SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// How long a region key replaced by a newer one is kept by default (`intake_key_grace_ms`).
pub const INTAKE_KEY_GRACE_MS: u64 = 7 * 86_400_000;
/// The shortest grace: several times the edges' `KEYS_POLL`, so that no edge seals to a key
/// after it was destroyed.
pub const INTAKE_KEY_GRACE_MIN_MS: u64 = 5_000;

/// How often key files are looked at for a rotation.
pub const KEYS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

impl PersonalData {
    /// What an edge of `region` holds: public keys only.
    pub fn sealing(
        settings: &ResidencySettings,
        region: &str,
        dir: &Path,
        secret: &[u8; 32],
    ) -> Result<PersonalData, LoadError> {
        let residency = Residency::new(settings, region)?;
        Ok(PersonalData {
            public: std::sync::Mutex::new(stamp(&dir.join(crate::keys::PUBLIC_FILE))),
            sealer: PersonalSealer::new(residency, dir, secret)?,
            region: region.to_owned(),
            opener: RwLock::new(None),
            shred: None,
        })
    }

    /// What a core of `region` holds: the public keys, and its region's private keys and
    /// keeping keys, which it must have when the policy makes its region anyone's home.
    pub fn opening(
        settings: &ResidencySettings,
        region: &str,
        dir: &Path,
        secret: &[u8; 32],
    ) -> Result<PersonalData, LoadError> {
        let mut data = Self::sealing(settings, region, dir, secret)?;
        let home = data.sealer.residency().homes().any(|h| h == region);
        let path = dir.join(format!("{region}.keys"));
        let shred_path = crate::shred::path(dir, region);
        let shred = match ShredKeys::load(&shred_path) {
            Ok(k) => Some(Arc::new(k) as Arc<dyn KeepingKeys>),
            Err(source) if home => {
                return Err(LoadError::NoKeeping {
                    region: region.to_owned(),
                    source,
                });
            }
            Err(_) => None,
        };
        match PersonalOpener::load(dir, region, shred.clone()) {
            Ok(o) => {
                *data.opener.write().unwrap_or_else(|p| p.into_inner()) = Some((stamp(&path), o))
            }
            Err(source) if home => {
                return Err(LoadError::NoPrivate {
                    region: region.to_owned(),
                    source,
                });
            }
            Err(e) => {
                tracing::info!(error = %e, "this region is no one's home: it opens no personal data");
            }
        }
        data.shred = shred;
        Ok(data)
    }

    /// This region's keeping keys, where it has them.
    pub fn shred(&self) -> Option<&Arc<dyn KeepingKeys>> {
        self.shred.as_ref()
    }

    /// Where the key files are.
    pub fn keys_dir(&self) -> &Path {
        &self.sealer.dir
    }

    /// The region this node is in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `s` as this region keeps it, when it is this region's to keep and not kept so yet
    /// (`PersonalOpener::keep`, `with_opener`).
    pub fn keep(
        &self,
        customer: &CustomerId,
        accepted_at_ms: i64,
        epoch: i64,
        s: &SealedPersonal,
    ) -> Result<Option<SealedPersonal>, UnsealError> {
        let suite = self.sealer.residency().suite_of(&self.region);
        self.with_opener(None, |o| o.keep(customer, accepted_at_ms, epoch, suite, s))
    }

    /// `f` with the opener in use, `none` without one. Sealed to a key of this region not held
    /// yet (an edge took a rotation up before this core), the key file is read again first.
    fn with_opener<T>(
        &self,
        none: T,
        mut f: impl FnMut(&PersonalOpener) -> Result<T, UnsealError>,
    ) -> Result<T, UnsealError> {
        let Some(opener) = self.opener() else {
            return Ok(none);
        };
        match f(&opener) {
            Err(UnsealError::Open(OpenError::Key(KeyError::NotHeld(_)))) => {
                self.reload_opener();
                match self.opener() {
                    Some(o) => f(&o),
                    None => Ok(none),
                }
            }
            other => other,
        }
    }

    /// Seals every address in `items` that is in the clear (`PersonalSealer::seal_all`).
    pub fn seal_all(&self, items: Vec<(&CustomerId, &mut ShipTo)>) -> Result<(), SealError> {
        self.sealer.seal_all(items)
    }

    /// The opener in use, if this region has one.
    fn opener(&self) -> Option<PersonalOpener> {
        let opener = self.opener.read().unwrap_or_else(|p| p.into_inner());
        opener.as_ref().map(|(_, o)| o.clone())
    }

    /// Opens `ship_to` where this region is its home (`with_opener`).
    pub fn open(&self, customer: &CustomerId, ship_to: &mut ShipTo) -> Result<(), UnsealError> {
        self.with_opener((), |o| o.open(customer, ship_to))
    }

    /// `order` with its address opened where this region is its home (`open`); where it cannot
    /// be (a key not held, data altered) it stays sealed, shown redacted, and the error is
    /// logged.
    pub fn open_order(&self, order: &mut commerce::order::Order) {
        if let Err(e) = self.open(&order.customer_id, &mut order.ship_to) {
            tracing::error!(order = %order.order_id, error = %e, "a sealed address of this region did not open; shown redacted");
        }
    }

    /// Reads the key files again where they changed: the sealer takes a rotated region's new
    /// key, the opener a new key of its region. A file that does not load leaves the keys in
    /// use, and says why.
    pub fn reload(&self) {
        let dir = &self.sealer.dir;
        let public = stamp(&dir.join(crate::keys::PUBLIC_FILE));
        let seen = std::mem::replace(
            &mut *self.public.lock().unwrap_or_else(|p| p.into_inner()),
            public,
        );
        match if seen == public {
            Ok(false)
        } else {
            self.sealer.reload()
        } {
            Ok(true) => {
                tracing::info!(keys = ?self.sealer.keys(), "public keys reloaded: sealing personal data to the newest");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "public keys not reloaded; the ones in use are kept");
            }
        }
        self.reload_opener();
    }

    /// Reads this region's key file again, if it changed since it was read: looked at under
    /// the read lock, read with no lock held, put in place under the write lock.
    fn reload_opener(&self) {
        let dir = &self.sealer.dir;
        let now = stamp(&dir.join(format!("{}.keys", self.region)));
        match self
            .opener
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some((seen, _)) if *seen != now => {}
            _ => return,
        }
        let loaded = PersonalOpener::load(dir, &self.region, self.shred.clone());
        let mut opener = self.opener.write().unwrap_or_else(|p| p.into_inner());
        match loaded {
            Ok(o) => {
                tracing::info!(region = %self.region, "this region's personal data keys reloaded");
                *opener = Some((now, o));
            }
            Err(e) => {
                if let Some((seen, _)) = opener.as_mut() {
                    *seen = now;
                }
                tracing::error!(error = %e, "this region's keys not reloaded; the ones in use are kept");
            }
        }
    }

    /// Reloads the key files every `KEYS_POLL` on the current runtime, until `self` is dropped.
    pub fn watch(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEYS_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                // Small files, rarely changed: read off the async threads all the same.
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::Sealed;

    fn address() -> Address {
        Address {
            name: Some("Wang Xiaoming".into()),
            line1: "88 Century Avenue".into(),
            line2: None,
            city: "Shanghai".into(),
            postal_code: "200120".into(),
            phone: Some("+86 21 5555 0100".into()),
        }
    }

    fn country(c: &str) -> Country {
        Country::new(c).unwrap()
    }

    fn setup() -> (tempfile::TempDir, Residency) {
        let dir = tempfile::tempdir().unwrap();
        crate::init(dir.path(), &["cn-east".into(), "us-east".into()]).unwrap();
        let settings = ResidencySettings {
            homes: [(country("CN"), "cn-east".to_owned())].into(),
            suites: [("cn-east".to_owned(), "sm4-gcm".to_owned())].into(),
            ..Default::default()
        };
        (dir, Residency::new(&settings, "us-east").unwrap())
    }

    #[test]
    fn an_address_opens_at_its_home_region_only_and_for_its_customer_only() {
        let (dir, residency) = setup();
        let sealer = PersonalSealer::new(residency, dir.path(), &[3; 32]).unwrap();
        let me = CustomerId::new("c-1").unwrap();
        let mut ship_to = ShipTo::plain(country("CN"), address());
        sealer.seal(&me, &mut ship_to).unwrap();
        let Personal::Sealed(s) = &ship_to.personal else {
            panic!("{ship_to:?}")
        };
        assert_eq!(s.home, "cn-east");
        let sealed: Sealed = codec::decode(&s.sealed).unwrap();
        assert_eq!(sealed.suite, Suite::Sm4Gcm);
        for text in ["Century", "Shanghai", "200120", "Wang", "5555"] {
            assert!(
                !s.sealed.windows(text.len()).any(|w| w == text.as_bytes()),
                "{text} in the clear"
            );
        }
        // Another region leaves it sealed; so does the home region for another customer.
        let elsewhere = PersonalOpener::load(dir.path(), "us-east", None).unwrap();
        let mut copy = ship_to.clone();
        elsewhere.open(&me, &mut copy).unwrap();
        assert_eq!(copy, ship_to);
        let home = PersonalOpener::load(dir.path(), "cn-east", None).unwrap();
        let mut copy = ship_to.clone();
        let other = CustomerId::new("c-2").unwrap();
        assert!(home.open(&other, &mut copy).is_err());
        assert_eq!(copy, ship_to, "a failed open leaves it sealed");
        home.open(&me, &mut copy).unwrap();
        assert_eq!(copy, ShipTo::plain(country("CN"), address()));
        // Shoppers elsewhere are homed by default at the node's region, in AES-256-GCM.
        let mut us = ShipTo::plain(country("US"), address());
        sealer.seal(&me, &mut us).unwrap();
        let Personal::Sealed(s) = &us.personal else {
            panic!()
        };
        assert_eq!(s.home, "us-east");
        let sealed: Sealed = codec::decode(&s.sealed).unwrap();
        assert_eq!(sealed.suite, Suite::Aes256Gcm);
    }

    #[test]
    fn a_retry_is_known_by_its_digest_and_another_address_is_not() {
        let (dir, residency) = setup();
        let sealer = PersonalSealer::new(residency, dir.path(), &[3; 32]).unwrap();
        let me = CustomerId::new("c-1").unwrap();
        let seal = |a: Address| {
            let mut s = ShipTo::plain(country("CN"), a);
            sealer.seal(&me, &mut s).unwrap();
            s
        };
        let (a, b) = (seal(address()), seal(address()));
        assert_ne!(a, b, "each sealing is fresh");
        assert!(a.may_equal(&b));
        let mut moved = address();
        moved.line1 = "89 Century Avenue".into();
        assert!(!a.may_equal(&seal(moved)));
    }

    #[test]
    fn rotation_seals_to_the_new_key_and_old_data_still_opens() {
        let (dir, residency) = setup();
        let sealer = PersonalSealer::new(residency, dir.path(), &[3; 32]).unwrap();
        let me = CustomerId::new("c-1").unwrap();
        let mut old = ShipTo::plain(country("CN"), address());
        sealer.seal(&me, &mut old).unwrap();
        assert!(!sealer.reload().unwrap(), "nothing changed yet");
        crate::keys::rotate(dir.path(), "cn-east").unwrap();
        assert!(sealer.reload().unwrap());
        assert!(sealer.keys().contains(&"cn-east/2".to_owned()));
        let mut new = ShipTo::plain(country("CN"), address());
        sealer.seal(&me, &mut new).unwrap();
        let home = PersonalOpener::load(dir.path(), "cn-east", None).unwrap();
        for mut s in [old, new] {
            home.open(&me, &mut s).unwrap();
            assert_eq!(s, ShipTo::plain(country("CN"), address()));
        }
    }

    #[test]
    fn a_policy_whose_home_has_no_key_is_refused_and_bad_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        crate::init(dir.path(), &["us-east".into()]).unwrap();
        let settings = ResidencySettings {
            homes: [(country("CN"), "cn-east".to_owned())].into(),
            ..Default::default()
        };
        let residency = Residency::new(&settings, "us-east").unwrap();
        let err = PersonalSealer::new(residency, dir.path(), &[3; 32]).unwrap_err();
        assert!(
            matches!(err, PolicyError::NoKey(ref r) if r == "cn-east"),
            "{err}"
        );
        let bad = ResidencySettings {
            suites: [("us-east".to_owned(), "rot13".to_owned())].into(),
            ..Default::default()
        };
        assert!(Residency::new(&bad, "us-east").is_err());
        assert!(bad.check().is_err());
        let quick = ResidencySettings {
            retention_ms: Some(10),
            ..Default::default()
        };
        assert!(
            quick
                .check()
                .unwrap_err()
                .to_string()
                .contains("retention_ms")
        );
        // An address out of bounds is refused before anything is sealed.
        let residency = Residency::new(&ResidencySettings::default(), "us-east").unwrap();
        let sealer = PersonalSealer::new(residency, dir.path(), &[3; 32]).unwrap();
        let mut long = address();
        long.city = "x".repeat(1_000);
        let mut s = ShipTo::plain(country("US"), long);
        let me = CustomerId::new("c-1").unwrap();
        assert!(matches!(
            sealer.seal(&me, &mut s),
            Err(SealError::Invalid(_))
        ));
        // Sealed data that is not, or is filed under another region, does not open.
        let home = PersonalOpener::load(dir.path(), "us-east", None).unwrap();
        let mut junk = ShipTo {
            country: country("US"),
            personal: Personal::Sealed(SealedPersonal {
                home: "us-east".into(),
                digest: [0; 16],
                sealed: vec![1, 2, 3],
            }),
        };
        assert!(home.open(&me, &mut junk).is_err());
    }

    #[test]
    fn data_sealed_to_a_key_the_region_does_not_hold_is_an_error_not_a_panic() {
        let (dir, residency) = setup();
        let sealer = PersonalSealer::new(residency, dir.path(), &[3; 32]).unwrap();
        let me = CustomerId::new("c-1").unwrap();
        let mut s = ShipTo::plain(country("CN"), address());
        sealer.seal(&me, &mut s).unwrap();
        // Another deployment's cn-east/1: the same id, another key.
        let other = tempfile::tempdir().unwrap();
        crate::init(other.path(), &["cn-east".into()]).unwrap();
        let wrong = PersonalOpener::load(other.path(), "cn-east", None).unwrap();
        let mut copy = s.clone();
        assert!(wrong.open(&me, &mut copy).is_err());
        assert_eq!(copy, s);
        // A key id it does not hold at all.
        crate::keys::rotate(dir.path(), "cn-east").unwrap();
        crate::keys::rotate(dir.path(), "cn-east").unwrap();
        let newer = PersonalSealer::new(
            Residency::new(
                &ResidencySettings {
                    homes: [(country("CN"), "cn-east".to_owned())].into(),
                    ..Default::default()
                },
                "us-east",
            )
            .unwrap(),
            dir.path(),
            &[3; 32],
        )
        .unwrap();
        let mut three = ShipTo::plain(country("CN"), address());
        newer.seal(&me, &mut three).unwrap();
        let err = wrong.open(&me, &mut three.clone()).unwrap_err();
        assert!(err.to_string().contains("cn-east/3"), "{err}");
    }

    #[cfg(feature = "measure-plaintext")]
    #[test]
    fn addresses_stay_in_the_clear_only_on_a_node_that_listens_on_loopback_alone() {
        let settings = ResidencySettings {
            plaintext_on_loopback: true,
            ..Default::default()
        };
        let loopback: std::net::SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let public: std::net::SocketAddr = "10.0.0.1:7000".parse().unwrap();
        assert!(settings.check_listeners(&[loopback]).is_ok());
        let err = settings.check_listeners(&[loopback, public]).unwrap_err();
        assert!(err.to_string().contains("10.0.0.1:7000"), "{err}");
        assert!(
            ResidencySettings::default()
                .check_listeners(&[public])
                .is_ok()
        );
        let (dir, _) = setup();
        let sealer = PersonalSealer::new(
            Residency::new(&settings, "us-east").unwrap(),
            dir.path(),
            &[3; 32],
        )
        .unwrap();
        let mut s = ShipTo::plain(country("US"), address());
        sealer
            .seal(&CustomerId::new("c-1").unwrap(), &mut s)
            .unwrap();
        assert_eq!(s, ShipTo::plain(country("US"), address()));
    }

    #[test]
    fn a_data_key_seals_a_bounded_number_of_values_then_a_new_one_is_made() {
        let (dir, residency) = setup();
        let mut sealer = PersonalSealer::new(residency, dir.path(), &[3; 32]).unwrap();
        sealer.data_key_values = 2;
        let me = CustomerId::new("c-1").unwrap();
        let enc = |s: &ShipTo| match &s.personal {
            Personal::Sealed(p) => codec::decode::<Sealed>(&p.sealed).unwrap().enc,
            other => panic!("{other:?}"),
        };
        let sealed: Vec<ShipTo> = (0..5)
            .map(|_| {
                let mut s = ShipTo::plain(country("CN"), address());
                sealer.seal(&me, &mut s).unwrap();
                s
            })
            .collect();
        assert_eq!(enc(&sealed[0]), enc(&sealed[1]));
        assert_ne!(enc(&sealed[1]), enc(&sealed[2]));
        assert_eq!(enc(&sealed[2]), enc(&sealed[3]));
        assert_ne!(enc(&sealed[3]), enc(&sealed[4]));
        let home = PersonalOpener::load(dir.path(), "cn-east", None).unwrap();
        for mut s in sealed {
            home.open(&me, &mut s).unwrap();
            assert_eq!(s, ShipTo::plain(country("CN"), address()));
        }
    }

    #[test]
    fn a_core_opens_what_is_sealed_to_a_key_rotated_since_it_read_its_file() {
        let (dir, _) = setup();
        let settings = ResidencySettings {
            homes: [(country("CN"), "cn-east".to_owned())].into(),
            ..Default::default()
        };
        let core = PersonalData::opening(&settings, "cn-east", dir.path(), &[3; 32]).unwrap();
        crate::keys::rotate(dir.path(), "cn-east").unwrap();
        // An edge that read the new public key before this core read its key file.
        let edge = PersonalSealer::new(
            Residency::new(&settings, "us-east").unwrap(),
            dir.path(),
            &[3; 32],
        )
        .unwrap();
        assert!(edge.keys().contains(&"cn-east/2".to_owned()));
        let me = CustomerId::new("c-1").unwrap();
        let mut s = ShipTo::plain(country("CN"), address());
        edge.seal(&me, &mut s).unwrap();
        core.open(&me, &mut s).unwrap();
        assert_eq!(s, ShipTo::plain(country("CN"), address()));
    }

    /// The home region keeps an address under its customer's key of an epoch: it opens the
    /// same, with the same digest; erased, that key is gone and the kept copy with it, while
    /// a new epoch keeps again; retired, a period's copies are gone.
    #[test]
    fn a_kept_address_opens_until_its_customer_or_its_period_is_destroyed() {
        let (dir, _) = setup();
        let settings = ResidencySettings {
            homes: [(country("CN"), "cn-east".to_owned())].into(),
            suites: [("cn-east".to_owned(), "sm4-gcm".to_owned())].into(),
            ..Default::default()
        };
        let core = PersonalData::opening(&settings, "cn-east", dir.path(), &[3; 32]).unwrap();
        let me = CustomerId::new("c-1").unwrap();
        let mut s = ShipTo::plain(country("CN"), address());
        core.seal_all(vec![(&me, &mut s)]).unwrap();
        let Personal::Sealed(intake) = s.personal.clone() else {
            panic!("{s:?}")
        };
        let day = crate::shred::DEFAULT_PERIOD_MS as i64;
        let now = util::clock::now_ms();
        let kept = core.keep(&me, now, 0, &intake).unwrap().unwrap();
        assert_eq!(kept.digest, intake.digest);
        let Seal::Kept(k) = codec::decode::<Seal>(&kept.sealed).unwrap() else {
            panic!("not kept")
        };
        assert_eq!((k.suite, k.epoch), (Suite::Sm4Gcm, 0));
        assert_eq!(
            core.keep(&me, now, 0, &kept).unwrap(),
            None,
            "kept so already"
        );
        let opened = |p: &SealedPersonal| {
            let mut s = ShipTo {
                country: country("CN"),
                personal: Personal::Sealed(p.clone()),
            };
            core.open(&me, &mut s).map(|()| s)
        };
        assert_eq!(
            opened(&kept).unwrap(),
            ShipTo::plain(country("CN"), address())
        );
        // Bound to its customer, and to its epoch and period.
        let mut other = ShipTo {
            country: country("CN"),
            personal: Personal::Sealed(kept.clone()),
        };
        assert!(
            core.open(&CustomerId::new("c-2").unwrap(), &mut other)
                .is_err()
        );
        let mut moved = k.clone();
        moved.epoch = 1;
        let moved = SealedPersonal {
            sealed: Seal::Kept(moved).encode().unwrap(),
            ..kept.clone()
        };
        assert!(matches!(
            opened(&moved),
            Err(UnsealError::Kept(KeptError::Unauthentic(_)))
        ));
        // Erased: the kept copy is gone; the customer's next epoch keeps from intake again.
        let shred = core.shred().unwrap();
        let ended = crate::shred::Ended {
            customer: me.as_str().into(),
            epoch: 0,
            version: 0,
        };
        assert_eq!(shred.puncture(&[ended]).unwrap(), 1);
        assert!(matches!(
            opened(&kept),
            Err(UnsealError::Kept(KeptError::Gone(
                crate::shred::Gone::Erased
            )))
        ));
        let again = core.keep(&me, now, 7, &intake).unwrap().unwrap();
        assert_eq!(
            opened(&again).unwrap(),
            ShipTo::plain(country("CN"), address())
        );
        // Past retention: the period's copies are gone.
        shred.retire_before(now + day).unwrap();
        assert!(matches!(
            opened(&again),
            Err(UnsealError::Kept(KeptError::Gone(
                crate::shred::Gone::Retired
            )))
        ));
        // A region with no keeping keys is refused as a home.
        std::fs::remove_file(crate::shred::path(dir.path(), "cn-east")).unwrap();
        let refused = PersonalData::opening(&settings, "cn-east", dir.path(), &[3; 32]);
        assert!(matches!(refused, Err(LoadError::NoKeeping { .. })));
    }
}
