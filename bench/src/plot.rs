//! The recall–QPS curve as SVG: one line per server and connection count, a point per
//! `ef_search`, up and to the right is better.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::report::Report;

const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];

pub fn recall_qps_svg(report: &Report, path: &Path) -> Result<()> {
    let points = report.targets.iter().flat_map(|t| &t.points);
    let (mut min_recall, mut max_qps) = (1.0f64, 1.0f64);
    for p in points {
        min_recall = min_recall.min(p.recall);
        max_qps = max_qps.max(p.qps);
    }
    let x_from = ((min_recall - 0.02) * 50.0).floor() / 50.0;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    let plot = |root: &DrawingArea<SVGBackend, _>| -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let d = &report.dataset;
        let title = format!(
            "{} ({} × {}, {}), k = {}",
            d.name,
            d.rows,
            d.dim,
            d.metric.name(),
            report.settings.k
        );
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(x_from.max(0.0)..1.0f64, 0f64..max_qps * 1.1)?;
        chart
            .configure_mesh()
            .x_desc(format!("recall@{}", report.settings.k))
            .y_desc("queries per second")
            .draw()?;
        let mut colour = 0;
        for target in &report.targets {
            for &c in &report.settings.connections {
                let style = COLOURS[colour % COLOURS.len()];
                colour += 1;
                let series: Vec<(f64, f64)> = target
                    .points
                    .iter()
                    .filter(|p| p.connections == c)
                    .map(|p| (p.recall, p.qps))
                    .collect();
                let label = format!(
                    "{}, {c} connection{}",
                    target.name,
                    if c == 1 { "" } else { "s" }
                );
                chart
                    .draw_series(LineSeries::new(series.clone(), style.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], style.stroke_width(2))
                    });
                chart.draw_series(
                    series
                        .into_iter()
                        .map(|xy| Circle::new(xy, 3, style.filled())),
                )?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    plot(&root).map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}
