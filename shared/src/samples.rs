//! Key sets that look like real workloads, generated deterministically
//! (seeded SplitMix64, floating point through `libm`), so the page and the
//! tests that check it compute exactly the same keys: user ids, URLs, and a
//! Zipf-skewed operations list where a few hot keys take most requests.

use std::collections::HashSet;

use crate::placement::mix64;
use crate::protocol::NodeRequest;

/// Distinct keys in each sample.
pub const SAMPLE_KEYS: usize = 10_000;
/// Requests (`GET_ONE`s) in the Zipf workload, after one `PUT` per key.
pub const ZIPF_REQUESTS: usize = 100_000;
/// The Zipf exponent s: key of rank k is asked for in proportion to 1/k^s.
pub const ZIPF_EXPONENT: f64 = 1.1;

/// One shipped sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// `user:8f3a01c27b9e` and `account:1048576`.
    UserIds,
    /// `https://shop.example.com/products/books/482913` and kin.
    Urls,
    /// `item:42` keys with a Zipf-skewed list of reads.
    Zipf,
}

impl Sample {
    pub const ALL: [Sample; 3] = [Sample::UserIds, Sample::Urls, Sample::Zipf];

    /// The name in a URL, a test id or a file name.
    pub fn slug(self) -> &'static str {
        match self {
            Sample::UserIds => "users",
            Sample::Urls => "urls",
            Sample::Zipf => "zipf",
        }
    }

    /// What the page says it is.
    pub fn title(self) -> &'static str {
        match self {
            Sample::UserIds => "user ids",
            Sample::Urls => "URLs",
            Sample::Zipf => "Zipf workload",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Sample> {
        Sample::ALL.into_iter().find(|s| s.slug() == slug)
    }

    /// The sample's [`SAMPLE_KEYS`] distinct keys, always the same.
    pub fn keys(self) -> Vec<String> {
        let mut rng = Rng(0x5348_4152_4453_0000 ^ self as u64);
        let mut seen = HashSet::with_capacity(SAMPLE_KEYS);
        let mut keys = Vec::with_capacity(SAMPLE_KEYS);
        while keys.len() < SAMPLE_KEYS {
            let key = match self {
                Sample::UserIds => user_id(&mut rng),
                Sample::Urls => url(&mut rng),
                Sample::Zipf => format!("item:{}", keys.len() + 1),
            };
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        keys
    }

    /// The requests, as indices into [`Sample::keys`]: [`ZIPF_REQUESTS`]
    /// reads for the Zipf workload (index 0 is the hottest key), none for
    /// the others.
    pub fn requests(self) -> Vec<usize> {
        if self != Sample::Zipf {
            return Vec::new();
        }
        // The cumulative distribution of ranks 1..=n, searched per request.
        let mut cdf = Vec::with_capacity(SAMPLE_KEYS);
        let mut total = 0.0;
        for k in 1..=SAMPLE_KEYS {
            total += 1.0 / libm::pow(k as f64, ZIPF_EXPONENT);
            cdf.push(total);
        }
        let mut rng = Rng(0x5a49_5046);
        (0..ZIPF_REQUESTS)
            .map(|_| {
                let u = rng.unit() * total;
                cdf.partition_point(|&c| c < u).min(SAMPLE_KEYS - 1)
            })
            .collect()
    }

    /// What loading the sample runs: a `PUT` of each key (value
    /// `value-i`), then the requests as `GET_ONE`s.
    pub fn operations(self) -> Vec<NodeRequest> {
        let keys = self.keys();
        let mut ops: Vec<NodeRequest> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| NodeRequest::Put {
                key: k.as_str().into(),
                value: format!("value-{i}").as_str().into(),
                version: None,
            })
            .collect();
        ops.extend(
            self.requests().into_iter().map(|i| NodeRequest::GetOne { key: keys[i].as_str().into(), versioned: false }),
        );
        ops
    }
}

/// SplitMix64: a tiny, well-mixed, seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

fn user_id(rng: &mut Rng) -> String {
    if rng.below(10) < 7 {
        format!("user:{:012x}", rng.next() >> 16)
    } else {
        format!("account:{}", 1_000_000 + rng.below(9_000_000))
    }
}

fn url(rng: &mut Rng) -> String {
    // A few big hosts and a long tail, as in a crawl or a CDN log.
    const HOSTS: [&str; 8] = [
        "www.example.com",
        "www.example.com",
        "www.example.com",
        "shop.example.com",
        "shop.example.com",
        "api.example.com",
        "cdn.example.net",
        "blog.example.org",
    ];
    const CATEGORIES: [&str; 6] = ["books", "shoes", "garden", "toys", "audio", "kitchen"];
    const WORDS: [&str; 8] = ["rust", "sharding", "hash", "ring", "coffee", "maps", "tea", "bikes"];
    const NAMES: [&str; 6] = ["ana", "bo", "chen", "dara", "eli", "fatima"];
    let host = rng.pick(&HOSTS);
    let path = match rng.below(5) {
        0 => format!("/products/{}/{}", rng.pick(&CATEGORIES), 100_000 + rng.below(900_000)),
        1 => format!("/users/{}{}/posts/{}", rng.pick(&NAMES), rng.below(1000), rng.below(100_000)),
        2 => {
            let ext = rng.pick(&["js", "css", "png"]);
            format!("/static/{ext}/app.{:08x}.{ext}", rng.next() >> 32)
        }
        3 => format!("/search?q={}&page={}", rng.pick(&WORDS), 1 + rng.below(20)),
        _ => format!("/api/v2/orders/{:016x}", rng.next()),
    };
    format!("https://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic_distinct_and_shaped_like_their_names() {
        for s in Sample::ALL {
            let keys = s.keys();
            assert_eq!(keys, s.keys(), "{s:?} is the same every time");
            assert_eq!(keys.iter().collect::<HashSet<_>>().len(), SAMPLE_KEYS, "{s:?} keys are distinct");
            assert_eq!(Sample::from_slug(s.slug()), Some(s));
        }
        assert!(Sample::UserIds.keys().iter().all(|k| k.starts_with("user:") || k.starts_with("account:")));
        assert!(Sample::Urls.keys().iter().all(|k| k.starts_with("https://") && k[8..].contains('/')));
        assert_eq!(Sample::Urls.operations().len(), SAMPLE_KEYS);
    }

    #[test]
    fn zipf_requests_go_mostly_to_a_few_hot_keys() {
        let requests = Sample::Zipf.requests();
        assert_eq!(requests, Sample::Zipf.requests());
        assert_eq!(requests.len(), ZIPF_REQUESTS);
        let mut per_key = vec![0usize; SAMPLE_KEYS];
        for &i in &requests {
            per_key[i] += 1;
        }
        // With s = 1.1 over 10,000 keys, the top 1% take about half the requests.
        let top: usize = per_key[..SAMPLE_KEYS / 100].iter().sum();
        assert!(top * 10 > ZIPF_REQUESTS * 4, "top 1% took {top}");
        assert!(per_key[0] > per_key[9] && per_key[9] > per_key[99]);
        assert_eq!(Sample::Zipf.operations().len(), SAMPLE_KEYS + ZIPF_REQUESTS);
    }
}
