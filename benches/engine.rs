//! Parse + simulate of a 500 x 2000 wall (1,000,000 sections), with unlimited crews and
//! with 1, 100 and 10,000 teams. Target: each under 100 ms on a 2-core machine.

use std::hint::black_box;
use std::num::NonZeroU64;

use criterion::{Criterion, criterion_group, criterion_main};
use icewall::wall::{self, Limits, WallConfig};

/// A deterministic wall of random heights (a small LCG keeps the bench reproducible
/// without another dependency).
fn wall_text(profiles: usize, sections: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut text = String::with_capacity(profiles * sections * 3);
    for _ in 0..profiles {
        for section in 0..sections {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if section > 0 {
                text.push(' ');
            }
            text.push_str(&((state >> 33) % 31).to_string());
        }
        text.push('\n');
    }
    text
}

fn parse_and_simulate(c: &mut Criterion) {
    let text = wall_text(500, 2000);
    let mut group = c.benchmark_group("parse_and_simulate_1M_sections");
    group.sample_size(20);
    for teams in [None, Some(1), Some(100), Some(10_000)] {
        let name = teams.map_or("unlimited".to_owned(), |teams| format!("{teams}_teams"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let profiles = wall::parse_text(black_box(text.as_bytes()), &Limits::default())
                    .expect("the generated wall is valid");
                let config = WallConfig::try_new(profiles, teams.and_then(NonZeroU64::new))
                    .expect("the generated wall has profiles");
                black_box(wall::simulate(&config))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_and_simulate);
criterion_main!(benches);
