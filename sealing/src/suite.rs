//! The ciphers personal data is encrypted with: AES-256-GCM, the default, and SM4-GCM (SM4,
//! GB/T 32907, in the same GCM mode, as Chinese deployments ask for). Each key seals one value
//! only (`sealed`), so a fixed nonce derived with the key is safe.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};

/// A cipher for the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Suite {
    Aes256Gcm,
    Sm4Gcm,
}

/// Bytes of a nonce, for both suites.
pub const NONCE_LEN: usize = 12;
/// Bytes of an authentication tag, for both suites.
pub const TAG_LEN: usize = 16;

type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, U12>;

/// The data did not authenticate: a wrong key, or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealed data does not authenticate (a wrong key, or altered bytes)")]
pub struct Unauthentic;

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::Aes256Gcm, Suite::Sm4Gcm];

    /// Bytes of its key.
    pub fn key_len(self) -> usize {
        match self {
            Suite::Aes256Gcm => 32,
            Suite::Sm4Gcm => 16,
        }
    }

    /// What config files and logs call it.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "aes-256-gcm",
            Suite::Sm4Gcm => "sm4-gcm",
        }
    }

    /// The suite named `name` (`name`), if it is one.
    pub fn named(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// `plaintext` encrypted and authenticated with `aad` under `key` (of `key_len` bytes).
    pub fn encrypt(
        self,
        key: &[u8],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let sealed = match self {
            Suite::Aes256Gcm => {
                aes_gcm::Aes256Gcm::new_from_slice(key).map(|c| c.encrypt(nonce.into(), payload))
            }
            Suite::Sm4Gcm => Sm4Gcm::new_from_slice(key).map(|c| c.encrypt(nonce.into(), payload)),
        };
        // The key length is this suite's, and GCM encrypts any message this size.
        sealed
            .expect("a key of the suite's length")
            .expect("GCM encrypts messages under 64 GiB")
    }

    /// The plaintext of `ciphertext`, if it authenticates with `aad` under `key`.
    pub fn decrypt(
        self,
        key: &[u8],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, Unauthentic> {
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        match self {
            Suite::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(key)
                .map_err(|_| Unauthentic)?
                .decrypt(nonce.into(), payload),
            Suite::Sm4Gcm => Sm4Gcm::new_from_slice(key)
                .map_err(|_| Unauthentic)?
                .decrypt(nonce.into(), payload),
        }
        .map_err(|_| Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SM4 itself, from GB/T 32907-2016 appendix A: the standard's one example block.
    #[test]
    fn sm4_is_the_standards() {
        use sm4::cipher::{BlockCipherEncrypt, KeyInit};
        let key = codec::unhex("0123456789abcdeffedcba9876543210").unwrap();
        let mut block = sm4::cipher::Block::<sm4::Sm4>::try_from(key.as_slice()).unwrap();
        sm4::Sm4::new_from_slice(&key)
            .unwrap()
            .encrypt_block(&mut block);
        assert_eq!(codec::hex(&block), "681edf34d206965e86b3e94f536e4246");
    }

    /// AES-256-GCM from NIST's GCM test vectors (McGrew and Viega, test case 16).
    #[test]
    fn aes_256_gcm_is_nists() {
        let key = codec::unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .unwrap();
        let nonce: [u8; 12] = codec::unhex("cafebabefacedbaddecaf888")
            .unwrap()
            .try_into()
            .unwrap();
        let pt = codec::unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        let aad = codec::unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let ct = Suite::Aes256Gcm.encrypt(&key, &nonce, &aad, &pt);
        assert_eq!(
            codec::hex(&ct),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
        assert_eq!(
            Suite::Aes256Gcm.decrypt(&key, &nonce, &aad, &ct).unwrap(),
            pt
        );
    }

    /// SM4-GCM from RFC 8998, appendix A.1.
    #[test]
    fn sm4_gcm_is_rfc_8998s() {
        let key = codec::unhex("0123456789abcdeffedcba9876543210").unwrap();
        let nonce: [u8; 12] = codec::unhex("00001234567800000000abcd")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = codec::unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let pt = codec::unhex(
            "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd\
             eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa",
        )
        .unwrap();
        let ct = Suite::Sm4Gcm.encrypt(&key, &nonce, &aad, &pt);
        assert_eq!(
            codec::hex(&ct),
            "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735\
             d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d\
             83de3541e4c2b58177e065a9bf7b62ec"
        );
        assert_eq!(Suite::Sm4Gcm.decrypt(&key, &nonce, &aad, &ct).unwrap(), pt);
    }

    #[test]
    fn both_suites_refuse_altered_bytes_and_other_keys() {
        for suite in Suite::ALL {
            let key = vec![7u8; suite.key_len()];
            let nonce = [1u8; NONCE_LEN];
            let ct = suite.encrypt(&key, &nonce, b"order o2-1", b"1 Raffles Place");
            assert_eq!(ct.len(), 15 + TAG_LEN);
            assert_eq!(
                suite.decrypt(&key, &nonce, b"order o2-1", &ct).unwrap(),
                b"1 Raffles Place"
            );
            let mut altered = ct.clone();
            altered[0] ^= 1;
            assert_eq!(
                suite.decrypt(&key, &nonce, b"order o2-1", &altered),
                Err(Unauthentic)
            );
            assert_eq!(
                suite.decrypt(&key, &nonce, b"order o2-2", &ct),
                Err(Unauthentic)
            );
            let other = vec![8u8; suite.key_len()];
            assert_eq!(
                suite.decrypt(&other, &nonce, b"order o2-1", &ct),
                Err(Unauthentic)
            );
            assert_eq!(Suite::named(suite.name()), Some(suite));
        }
        assert_eq!(Suite::named("des"), None);
    }
}
