//! Frame time of the GUI with many jobs: the real `FerryApp` fed 10,000 jobs, scrolled and
//! updated. Twice: in an egui_kittest harness, which keeps AccessKit on (as with a screen reader;
//! the checks query its tree), and on a bare egui context as the window runs without a screen
//! reader (AccessKit off), with the tessellation of each frame counted. No GPU either way.
//!   cargo bench --bench gui_frames [-- JOBS]

// Tests and benchmarks may stop at the first surprise: the no-unwrap rule is for the product.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::engine::SystemClock;
use ferry::gui::{Connect, FerryApp, GuiOptions, PickKind, Pickers};
use ferry::job::{Job, JobDefaults, JobFile, JobId, JobState, JobType};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoPickers;

impl Pickers for NoPickers {
    fn pick(
        &mut self,
        _: PickKind,
        _: &Path,
        reply: Box<dyn FnOnce(Option<PathBuf>) + Send>,
    ) -> bool {
        reply(None);
        true
    }
}

fn jobs(count: usize) -> Vec<Job> {
    let now = chrono::Utc::now();
    (0..count)
        .map(|i| {
            let mut job = Job::new(
                JobId::new_random(),
                JobType::Download,
                &format!("file-{i:05}.bin"),
                "bench",
                &JobDefaults::default(),
                now - chrono::Duration::minutes(i as i64),
            )
            .expect("job");
            job.state = JobState::ALL[i % 7];
            job.files.push(JobFile {
                remote_url: format!("http://127.0.0.1/file-{i:05}.bin"),
                local_path: format!("/tmp/file-{i:05}.bin").into(),
                temp_path: format!("/tmp/.file-{i:05}.bin.ferry").into(),
                ranges: None,
                bytes_total: Some(1_000_000),
                bytes_transferred: (i as u64 * 7919) % 1_000_000,
                bytes_checkpointed: 0,
                transferred: false,
                completed: false,
                validators: None,
                segments: Vec::new(),
                checksum: None,
                checksum_verified: false,
            });
            job
        })
        .collect()
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let p95 = times[times.len() * 95 / 100];
    let max = times[times.len() - 1];
    println!(
        "{name:<34} frames {:>4}  mean {:>7.2} ms  p95 {:>7.2} ms  max {:>7.2} ms",
        times.len(),
        mean.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn options() -> GuiOptions {
    GuiOptions {
        connect: Connect::Socket(PathBuf::from("/nonexistent/ferry.sock")),
        clock: Arc::new(SystemClock::default()),
        settings_path: None,
        system_integration: false,
        pickers: Box::new(NoPickers),
        activations: None,
        wake: Default::default(),
        urls: Vec::new(),
    }
}

/// The window without a screen reader: egui's own pass and its tessellation, AccessKit off.
fn bare(count: usize, frames: usize) {
    use eframe::App;
    let ctx = egui::Context::default();
    let mut app = FerryApp::new(
        &eframe::CreationContext::_new_kittest(ctx.clone()),
        options(),
    );
    let mut frame = eframe::Frame::_new_kittest();
    app.load_jobs(jobs(count));
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1440.0, 860.0));
    let mut time = 0.0;
    // Whether the last frame painted a text containing this (the scrolling check).
    let mut painted: Vec<String> = Vec::new();
    let mut pass =
        |events: Vec<egui::Event>, app: &mut FerryApp, painted: &mut Vec<String>| -> Duration {
            time += 1.0 / 60.0;
            let input = egui::RawInput {
                screen_rect: Some(screen),
                time: Some(time),
                events,
                ..Default::default()
            };
            let start = Instant::now();
            let output = ctx.run_ui(input, |ui| {
                app.logic(ui.ctx(), &mut frame);
                app.ui(ui, &mut frame);
            });
            painted.clear();
            for clipped in &output.shapes {
                if let egui::Shape::Text(text) = &clipped.shape {
                    painted.push(text.galley.text().to_string());
                }
            }
            let mut textures = output.textures_delta;
            textures.clear(); // no GPU to upload the font atlas to
            let primitives = ctx.tessellate(output.shapes, output.pixels_per_point);
            let took = start.elapsed();
            assert!(!primitives.is_empty(), "the frame drew nothing");
            took
        };
    pass(vec![], &mut app, &mut painted);
    let times = (0..frames)
        .map(|_| pass(vec![], &mut app, &mut painted))
        .collect();
    summary("no AccessKit: steady", times);
    assert!(
        painted.iter().any(|t| t == "file-00000.bin"),
        "the first row is painted"
    );
    let times = (0..frames)
        .map(|i| {
            let delta = if i < frames / 2 { -120.0 } else { 120.0 };
            let events = vec![
                egui::Event::PointerMoved(egui::pos2(700.0, 300.0)),
                egui::Event::MouseWheel {
                    unit: egui::MouseWheelUnit::Point,
                    delta: egui::vec2(0.0, delta),
                    phase: egui::TouchPhase::Move,
                    modifiers: egui::Modifiers::NONE,
                    source: egui::MouseWheelSource::Wheel,
                },
            ];
            let took = pass(events, &mut app, &mut painted);
            if i + 1 == frames / 2 {
                assert!(
                    !painted.iter().any(|t| t == "file-00000.bin"),
                    "the wheel did not scroll the table"
                );
            }
            took
        })
        .collect();
    summary("no AccessKit: scrolling", times);
    let update = jobs(1);
    let times = (0..frames)
        .map(|i| {
            let mut job = update[0].clone();
            job.files[0].bytes_transferred = i as u64 * 1000;
            app.load_jobs_update(job);
            pass(vec![], &mut app, &mut painted)
        })
        .collect();
    summary("no AccessKit: a job update every frame", times);
}

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut window = Harness::builder()
        .with_size([1440.0, 860.0])
        .build_eframe(|cc| FerryApp::new(cc, options()));
    let loaded = Instant::now();
    window.state_mut().load_jobs(jobs(count));
    window.step();
    println!(
        "{count} jobs: first frame (sort + layout) {:.1} ms",
        loaded.elapsed().as_secs_f64() * 1e3
    );
    let frames = 300;
    let mut times = Vec::with_capacity(frames);
    for _ in 0..frames {
        let start = Instant::now();
        window.step();
        times.push(start.elapsed());
    }
    summary("steady (nothing changes)", times);
    assert!(
        window.query_by_label("file-00000.bin").is_some(),
        "the first row (sorted by name) is in view"
    );
    // The wheel scrolls what is under the pointer: the table.
    window.event(egui::Event::PointerMoved(egui::pos2(700.0, 300.0)));
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        let delta = if i < frames / 2 { -120.0 } else { 120.0 };
        window.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, delta),
            phase: egui::TouchPhase::Move,
            modifiers: egui::Modifiers::NONE,
            source: egui::MouseWheelSource::Wheel,
        });
        let start = Instant::now();
        window.step();
        times.push(start.elapsed());
        if i + 1 == frames / 2 {
            // Halfway the table has moved far down: the first row is out of view.
            assert!(
                window.query_by_label("file-00000.bin").is_none(),
                "the wheel did not scroll the table"
            );
        }
    }
    summary("scrolling", times);
    let mut times = Vec::with_capacity(frames);
    let update = jobs(1);
    for i in 0..frames {
        // A progress update moves one row to its place among the 10,000.
        let mut job = update[0].clone();
        job.files[0].bytes_transferred = i as u64 * 1000;
        window.state_mut().load_jobs_update(job);
        let start = Instant::now();
        window.step();
        times.push(start.elapsed());
    }
    summary("a job update every frame", times);
    bare(count, frames);
}
