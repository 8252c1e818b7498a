//! Sealing and opening one shopper's address (about 80 bytes of JSON), for each suite: with a
//! sealer or opener that has its HPKE context (what each order pays: its key exported, the data
//! encrypted), and the key exchange itself (a new sealer; an opener's first value of a key
//! share), paid once per sealer. The baseline, in the same run, is the suite alone encrypting the
//! same bytes under a key it already has.
//!
//! Then an order's address as the edge seals it and its home region opens it
//! (`PersonalSealer::seal`: the address checked, encoded, its keyed digest, sealed; and
//! `PersonalOpener::open`): what intake and an owner's read pay per order.
//!
//! Then what the home region's keeper pays per order (`PersonalOpener::keep`: the address
//! opened from its intake seal and sealed again under the keeping key of its customer's epoch),
//! and what opening a kept address pays, each for a customer not seen before (the keeping key
//! derived from the tree's root); the keeping key alone is the baseline.
//!
//! Run: `cargo bench -p sealing --bench seal`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use sealing::{FileKeys, Opener, PublicKeys, Sealer, Suite};

const ADDRESS: &[u8] =
    br#"{"line1":"1 Raffles Place, #20-01","city":"Singapore","postal_code":"048616"}"#;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    sealing::keys::init(dir.path(), &["ap-singapore".to_owned()]).unwrap();
    let public = PublicKeys::load(dir.path()).unwrap();
    let (id, key) = public.newest("ap-singapore").unwrap();
    let private = Arc::new(FileKeys::load(dir.path(), "ap-singapore").unwrap());
    let mut g = c.benchmark_group("address");
    for suite in Suite::ALL {
        let name = suite.name();
        let sealer = Sealer::new(&id, &key, suite).unwrap();
        g.bench_function(format!("{name}/seal"), |b| {
            b.iter(|| sealer.seal(b"o2-1", black_box(ADDRESS)))
        });
        let sealed = sealer.seal(b"o2-1", ADDRESS);
        let opener = Opener::new(private.clone());
        g.bench_function(format!("{name}/open"), |b| {
            b.iter(|| opener.open(black_box(&sealed), b"o2-1").unwrap())
        });
        g.bench_function(format!("{name}/key exchange: a new sealer"), |b| {
            b.iter(|| Sealer::new(&id, &key, suite).unwrap())
        });
        g.bench_function(
            format!("{name}/key exchange: a new opener's first value"),
            |b| {
                b.iter(|| {
                    Opener::new(private.clone())
                        .open(black_box(&sealed), b"o2-1")
                        .unwrap()
                })
            },
        );
        let data_key = vec![7u8; suite.key_len()];
        g.bench_function(format!("{name}/baseline: encrypt alone"), |b| {
            b.iter(|| suite.encrypt(&data_key, &[1; 12], b"o2-1", black_box(ADDRESS)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("an order's address");
    let country = commerce::Country::new("SG").unwrap();
    let address = commerce::personal::Address {
        name: Some("Tan Ah Kow".into()),
        line1: "1 Raffles Place".into(),
        line2: Some("#20-01".into()),
        city: "Singapore".into(),
        postal_code: "048616".into(),
        phone: Some("+65 6123 4567".into()),
    };
    let customer = commerce::CustomerId::new("c-42").unwrap();
    let opener = sealing::PersonalOpener::load(dir.path(), "ap-singapore", None).unwrap();
    for suite in Suite::ALL {
        let settings = sealing::ResidencySettings {
            suites: [("ap-singapore".to_owned(), suite.name().to_owned())].into(),
            ..Default::default()
        };
        let residency = sealing::Residency::new(&settings, "ap-singapore").unwrap();
        let sealer = sealing::PersonalSealer::new(residency, dir.path(), &[9; 32]).unwrap();
        let plain = commerce::order::ShipTo::plain(country, address.clone());
        g.bench_function(format!("{}/seal at the edge", suite.name()), |b| {
            b.iter(|| {
                let mut s = plain.clone();
                sealer.seal(&customer, &mut s).unwrap();
                s
            })
        });
        let mut sealed = plain.clone();
        sealer.seal(&customer, &mut sealed).unwrap();
        g.bench_function(format!("{}/open at home", suite.name()), |b| {
            b.iter(|| {
                let mut s = sealed.clone();
                opener.open(&customer, &mut s).unwrap();
                s
            })
        });
        g.bench_function(format!("{}/baseline: the clone alone", suite.name()), |b| {
            b.iter(|| black_box(sealed.clone()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("kept at home");
    let day = sealing::shred::DEFAULT_PERIOD_MS;
    let shred: Arc<dyn sealing::shred::KeepingKeys> = Arc::new(
        sealing::shred::ShredKeys::create(
            &dir.path().join("bench.shred"),
            day,
            sealing::shred::backfill_ms(day),
        )
        .unwrap(),
    );
    let opener =
        sealing::PersonalOpener::load(dir.path(), "ap-singapore", Some(Arc::clone(&shred)))
            .unwrap();
    let now = util::clock::now_ms();
    let mut i = 0;
    // A customer not seen before at each value: no derivation is remembered between them.
    let customers: Vec<commerce::CustomerId> = (0..4_096)
        .map(|i| commerce::CustomerId::new(format!("c-{i}")).unwrap())
        .collect();
    for suite in Suite::ALL {
        let settings = sealing::ResidencySettings {
            suites: [("ap-singapore".to_owned(), suite.name().to_owned())].into(),
            ..Default::default()
        };
        let residency = sealing::Residency::new(&settings, "ap-singapore").unwrap();
        let sealer = sealing::PersonalSealer::new(residency, dir.path(), &[9; 32]).unwrap();
        let intake: Vec<commerce::personal::SealedPersonal> = customers
            .iter()
            .map(|c| {
                let mut s = commerce::order::ShipTo::plain(country, address.clone());
                sealer.seal(c, &mut s).unwrap();
                match s.personal {
                    commerce::personal::Personal::Sealed(s) => s,
                    _ => unreachable!("sealed"),
                }
            })
            .collect();
        g.bench_function(format!("{}/keep", suite.name()), |b| {
            b.iter(|| {
                i = (i + 1) % customers.len();
                opener
                    .keep(&customers[i], now, 0, suite, &intake[i])
                    .unwrap()
                    .unwrap()
            })
        });
        let kept: Vec<commerce::personal::SealedPersonal> = customers
            .iter()
            .zip(&intake)
            .map(|(c, s)| opener.keep(c, now, 0, suite, s).unwrap().unwrap())
            .collect();
        g.bench_function(format!("{}/open kept", suite.name()), |b| {
            b.iter(|| {
                i = (i + 1) % customers.len();
                let mut s = commerce::order::ShipTo {
                    country,
                    personal: commerce::personal::Personal::Sealed(kept[i].clone()),
                };
                opener.open(&customers[i], &mut s).unwrap();
                s
            })
        });
    }
    let period = shred.period_of(now);
    g.bench_function("baseline: a keeping key alone", |b| {
        b.iter(|| {
            i = (i + 1) % customers.len();
            let at = sealing::shred::KeptAt {
                generation: 0,
                period,
                customer: customers[i].as_str(),
                epoch: 0,
            };
            shred.value_key(&at, Suite::Aes256Gcm, &[0; 16]).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
