//! The fast path allocates its buffers once per run (docs/MODEL.md §9): after a first trial,
//! further vector-field evaluations and whole low-rank Dopri5 segments at `B = 1` make no heap
//! allocation at all. A counting global allocator (this test binary only) checks it.

use dtpsim::continuous::config::{DecoderLoss, EngineConfig};
use dtpsim::continuous::field::{Field, FlatWeights, PlasticFactors, Workspace};
use dtpsim::continuous::integrate::StageForm;
use dtpsim::continuous::{NoObserver, Phase, Simulation};
use dtpsim::theory::{fitted_tanh, noisy_example};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn vector_field_and_low_rank_segments_allocate_nothing_after_the_first_trial() {
    // one thread: the count must not include another test's allocations
    dtpsim::linalg::set_threads(1);
    let mut probed = EngineConfig::default();
    probed.dynamics.decoder.loss = DecoderLoss::DifferenceReconstruction;
    probed.dynamics.decoder.noise = 0.1;
    for cfg in [EngineConfig::default(), probed] {
        allocate_nothing_after_the_first_trial(cfg);
    }
}

/// Regular and difference-reconstruction decoders (whose probes are drawn once per segment,
/// when the drive is built).
fn allocate_nothing_after_the_first_trial(cfg: EngineConfig) {
    let net = fitted_tanh(6, 3, 0.8, 7, 100);
    let ex = noisy_example(&net, 11, 0.2);
    let mut sim = Simulation::new(&net, cfg, 1).unwrap();
    sim.run_trial(&[&ex], Phase::Learn, &mut NoObserver)
        .unwrap();
    let drive = sim.drive(&[&ex], true, true, true);

    let layout = sim.layout().clone();
    let arch = net.arch().clone();
    let cfg = sim.config().clone();
    let ws = Workspace::new(&arch, &layout, cfg.dynamics.scheme);
    let field = Field::with_workspace(&arch, &layout, &cfg, &drive, ws);
    let y = sim.state().to_vec();
    let mut dy = vec![0.0; y.len()];
    let mut factors = PlasticFactors::new(&layout);
    let neurons = layout.neurons();
    let weights = FlatWeights::new(&layout, &y);
    let count = allocations_during(|| {
        for _ in 0..50 {
            let (x, dx) = (&y[neurons.clone()], &mut dy[neurons.clone()]);
            assert!(field.eval_parts(0.0, x, &weights, dx, &mut factors));
        }
    });
    assert_eq!(count, 0, "allocations in 50 vector-field evaluations");

    for form in [StageForm::Factored, StageForm::Explicit] {
        sim.set_stage_form(form);
        // the first segment allocates the integrator's buffers
        sim.run_segment(&drive, 1.0, &mut NoObserver).unwrap();
        let evaluations = sim.stats().field.evaluations;
        let count = allocations_during(|| {
            sim.run_segment(&drive, 3.0, &mut NoObserver).unwrap();
        });
        assert_eq!(
            count, 0,
            "allocations in a low-rank Dopri5 segment, {form:?}"
        );
        assert!(
            sim.stats().field.evaluations >= evaluations + 12,
            "{form:?}: no work done"
        );
    }
}
