//! Small multiples: one truth-vs-estimate scatter per pricer in a grid that fits the window,
//! identical axes, the Tester's colours, the y = x line and the green and orange zones lightly
//! shaded, the report line as each title; zoom, pan and the cursor linked across plots. Modes:
//! linear, log-log (log10 axes with $ labels) and residuals (guess − truth against truth); an
//! overlay of two pricers with a segment joining each item's two guesses. Hover or click a point
//! to pick the item everywhere; with the select tool, a dragged rectangle selects items.
//!
//! Points, zones and segments are one mesh per plot ([`Layer`]), not one shape per point: 12
//! plots × 2,000 items stay within a frame's budget.

use super::{Command, CompareTab};
use crate::pricers::compare::Comparison;
use crate::tester::Colour;
use egui::{Color32, Pos2, RichText, Shape, Ui, epaint::Mesh};
use egui_plot::{Plot, PlotBounds, PlotGeometry, PlotItem, PlotItemBase, PlotPoint, PlotTransform};
use std::ops::RangeInclusive;
use std::sync::Arc;

/// What the scatters plot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PlotMode {
    /// Truth against guess, linear axes from 0.
    #[default]
    Linear,
    /// log10 of both, labelled in dollars.
    LogLog,
    /// Guess − truth against truth.
    Residuals,
}

/// Lowest price drawn on log axes (guesses of $0 sit there).
const LOG_FLOOR: f64 = 0.5;

/// The Tester's colours as drawn.
pub fn colour_of(c: Colour) -> Color32 {
    match c {
        Colour::Green => Color32::from_rgb(80, 180, 90),
        Colour::Orange => Color32::from_rgb(235, 150, 50),
        Colour::Red => Color32::from_rgb(220, 70, 70),
    }
}

impl PlotMode {
    /// A point of the mode from truth and guess.
    pub fn point(self, truth: f64, guess: f64) -> [f64; 2] {
        match self {
            Self::Linear => [truth, guess],
            Self::LogLog => [truth.max(LOG_FLOOR).log10(), guess.max(LOG_FLOOR).log10()],
            Self::Residuals => [truth, guess - truth],
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::LogLog => "log-log",
            Self::Residuals => "residuals",
        }
    }
}

/// Every pricer's points in one mode, the common bounds and the shaded zones.
pub struct PlotData {
    /// Mode of the points.
    pub mode: PlotMode,
    /// Alignment they were built from.
    pub generation: u64,
    /// `points[p][k]`: pricer `p`'s point for shared item `k`.
    pub points: Vec<Arc<Vec<[f64; 2]>>>,
    /// `colours[p][k]`.
    pub colours: Vec<Arc<Vec<Colour>>>,
    /// Bounds shared by every plot: `[xmin, ymin]`, `[xmax, ymax]`.
    pub bounds: ([f64; 2], [f64; 2]),
    /// Zone quads (four corners, plot coordinates) and their colour.
    pub zones: Arc<Vec<([[f64; 2]; 4], Color32)>>,
    /// The y = x line (or y = 0) as a polyline.
    pub diagonal: Arc<Vec<[f64; 2]>>,
}

impl PlotData {
    /// Builds the points of `mode` for every pricer of `c`.
    pub fn new(c: &Comparison, mode: PlotMode, generation: u64) -> Self {
        let points: Vec<Arc<Vec<[f64; 2]>>> =
            c.evals.iter().map(|e| Arc::new(e.items.iter().map(|i| mode.point(i.truth, i.guess)).collect())).collect();
        let colours = c.evals.iter().map(|e| Arc::new(e.items.iter().map(|i| i.colour).collect())).collect();
        let max = c.evals.iter().flat_map(|e| e.items.iter().map(|i| i.truth.max(i.guess))).fold(1.0, f64::max);
        let max_truth = c.items().iter().map(|i| i.truth).fold(1.0, f64::max);
        let bounds = match mode {
            PlotMode::Linear => ([0.0, 0.0], [max, max]),
            PlotMode::LogLog => ([LOG_FLOOR.log10(); 2], [max.log10(); 2]),
            PlotMode::Residuals => {
                let (lo, hi) = points
                    .iter()
                    .flat_map(|p| p.iter().map(|q| q[1]))
                    .fold((0f64, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
                let m = lo.abs().max(hi.abs()).max(1.0);
                ([0.0, -m], [max_truth, m])
            }
        };
        let x_max = if mode == PlotMode::Residuals { max_truth } else { max };
        Self {
            mode,
            generation,
            points,
            colours,
            bounds,
            zones: Arc::new(zones(mode, x_max)),
            diagonal: Arc::new(diagonal(mode, x_max)),
        }
    }

    /// Positions of the items whose point in pricer `plot`'s scatter (or, in an overlay of
    /// `pair`, either pricer's point) lies in the rectangle.
    pub fn in_rect(&self, plot: usize, x: [f64; 2], y: [f64; 2], pair: Option<(usize, usize)>) -> Vec<usize> {
        let inside = |p: usize, k: usize| {
            self.points.get(p).and_then(|v| v.get(k)).is_some_and(|q| {
                q[0] >= x[0].min(x[1]) && q[0] <= x[0].max(x[1]) && q[1] >= y[0].min(y[1]) && q[1] <= y[0].max(y[1])
            })
        };
        let n = self.points.first().map_or(0, |v| v.len());
        (0..n)
            .filter(|&k| match pair {
                Some((a, b)) => inside(a, k) || inside(b, k),
                None => inside(plot, k),
            })
            .collect()
    }
}

/// The truth values where the zone edges bend or clip.
fn zone_samples(mode: PlotMode, x_max: f64) -> Vec<f64> {
    let mut t: Vec<f64> = vec![0.0, 40.0, 80.0, 200.0];
    if mode == PlotMode::LogLog {
        // Curved edges on log axes: many short straight pieces.
        let (a, b) = (LOG_FLOOR.log10(), x_max.max(1.0).log10());
        t.extend((0..=80).map(|s| 10f64.powf(a + (b - a) * f64::from(s) / 80.0)));
    }
    t.push(x_max);
    t.retain(|v| *v <= x_max && (mode != PlotMode::LogLog || *v >= LOG_FLOOR));
    t.sort_by(f64::total_cmp);
    t.dedup();
    t
}

/// Quads of the green zone (|guess − truth| < max(40, 0.2·truth)) and the two orange ones (up to
/// max(80, 0.4·truth)), in plot coordinates of `mode`.
fn zones(mode: PlotMode, x_max: f64) -> Vec<([[f64; 2]; 4], Color32)> {
    let green = Color32::from_rgba_unmultiplied(80, 180, 90, 34);
    let orange = Color32::from_rgba_unmultiplied(235, 150, 50, 26);
    let g = |t: f64| f64::max(40.0, 0.2 * t);
    let o = |t: f64| f64::max(80.0, 0.4 * t);
    let floor = if mode == PlotMode::LogLog { LOG_FLOOR } else { 0.0 };
    type Edge<'a> = &'a dyn Fn(f64) -> f64;
    let bands: [(Edge<'_>, Edge<'_>, Color32); 3] = [
        (&|t| t - g(t), &|t| t + g(t), green),
        (&|t| t + g(t), &|t| t + o(t), orange),
        (&|t| t - o(t), &|t| t - g(t), orange),
    ];
    let s = zone_samples(mode, x_max);
    let mut quads = vec![];
    for w in s.windows(2) {
        let (t0, t1) = (w[0], w[1]);
        for (lo, hi, colour) in &bands {
            let (l0, l1, h0, h1) = (lo(t0).max(floor), lo(t1).max(floor), hi(t0).max(floor), hi(t1).max(floor));
            if h0 <= l0 && h1 <= l1 {
                continue;
            }
            let p = |t: f64, v: f64| mode.point(t, v);
            quads.push(([p(t0, l0), p(t1, l1), p(t1, h1), p(t0, h0)], *colour));
        }
    }
    quads
}

fn diagonal(mode: PlotMode, x_max: f64) -> Vec<[f64; 2]> {
    let lo = if mode == PlotMode::LogLog { LOG_FLOOR } else { 0.0 };
    vec![mode.point(lo, lo), mode.point(x_max, x_max)]
}

/// Points of one pricer, their colours, and how they are drawn.
type PointSet = (Arc<Vec<[f64; 2]>>, Arc<Vec<Colour>>, PointStyle);

/// One plot's content as a single item: zones, the diagonal, segments, points, highlights.
struct Layer {
    base: PlotItemBase,
    zones: Arc<Vec<([[f64; 2]; 4], Color32)>>,
    diagonal: Arc<Vec<[f64; 2]>>,
    /// Point sets and their colours; the first is drawn first.
    sets: Vec<PointSet>,
    /// Segments joining set 0 and set 1 item by item (overlay).
    segments: bool,
    /// Items drawn on top with a ring.
    highlight: Option<usize>,
    /// Items of the rectangle selection (drawn with a dark outline).
    selection: Option<Arc<Vec<usize>>>,
    /// The rectangle being dragged.
    rect: Option<([f64; 2], [f64; 2])>,
    bounds: PlotBounds,
    ring: Color32,
}

#[derive(Clone, Copy)]
enum PointStyle {
    /// A filled hexagon.
    Dot,
    /// A filled square (the second pricer of an overlay).
    Square,
}

impl PlotItem for Layer {
    fn shapes(&self, _ui: &Ui, transform: &PlotTransform, shapes: &mut Vec<Shape>) {
        let to = |p: &[f64; 2]| transform.position_from_point(&PlotPoint::new(p[0], p[1]));
        let mut mesh = Mesh::default();
        for (quad, colour) in self.zones.iter() {
            let base = mesh.vertices.len() as u32;
            for c in quad {
                mesh.colored_vertex(to(c), *colour);
            }
            mesh.add_triangle(base, base + 1, base + 2);
            mesh.add_triangle(base, base + 2, base + 3);
        }
        shapes.push(Shape::mesh(mesh));
        let line: Vec<Pos2> = self.diagonal.iter().map(to).collect();
        shapes.push(Shape::line(line, egui::Stroke::new(1.0, Color32::GRAY)));
        if self.segments && self.sets.len() == 2 {
            let (a, b) = (&self.sets[0].0, &self.sets[1].0);
            let stroke = egui::Stroke::new(0.6, Color32::from_rgba_unmultiplied(150, 150, 150, 90));
            let mut m = Mesh::default();
            for (p, q) in a.iter().zip(b.iter()) {
                segment_into(&mut m, to(p), to(q), stroke);
            }
            shapes.push(Shape::mesh(m));
        }
        let frame = transform.frame().expand(4.0);
        let mut m = Mesh::default();
        for (pts, cols, style) in &self.sets {
            let r = match style {
                PointStyle::Dot => 2.6,
                PointStyle::Square => 2.3,
            };
            for (p, c) in pts.iter().zip(cols.iter()) {
                let pos = to(p);
                if frame.contains(pos) {
                    dot_into(&mut m, pos, r, colour_of(*c), *style);
                }
            }
        }
        shapes.push(Shape::mesh(m));
        if let Some(sel) = &self.selection {
            let stroke = egui::Stroke::new(1.2, self.ring);
            for &k in sel.iter() {
                for (pts, _, _) in &self.sets {
                    if let Some(p) = pts.get(k) {
                        shapes.push(Shape::circle_stroke(to(p), 4.0, stroke));
                    }
                }
            }
        }
        if let Some(k) = self.highlight {
            let pos: Vec<Pos2> = self.sets.iter().filter_map(|(pts, _, _)| pts.get(k).map(to)).collect();
            if pos.len() == 2 {
                shapes.push(Shape::line_segment([pos[0], pos[1]], egui::Stroke::new(2.0, self.ring)));
            }
            for p in pos {
                shapes.push(Shape::circle_stroke(p, 7.0, egui::Stroke::new(2.5, self.ring)));
            }
        }
        if let Some((a, b)) = self.rect {
            let r = egui::Rect::from_two_pos(to(&a), to(&b));
            shapes.push(Shape::rect_filled(r, 0.0, Color32::from_rgba_unmultiplied(100, 150, 250, 40)));
            shapes.push(Shape::rect_stroke(
                r,
                0.0,
                egui::Stroke::new(1.0, Color32::from_rgb(100, 150, 250)),
                egui::StrokeKind::Inside,
            ));
        }
    }

    fn initialize(&mut self, _x_range: RangeInclusive<f64>) {}

    fn color(&self) -> Color32 {
        Color32::GRAY
    }

    fn geometry(&self) -> PlotGeometry<'_> {
        PlotGeometry::None
    }

    fn bounds(&self) -> PlotBounds {
        self.bounds
    }

    fn base(&self) -> &PlotItemBase {
        &self.base
    }

    fn base_mut(&mut self) -> &mut PlotItemBase {
        &mut self.base
    }
}

fn dot_into(m: &mut Mesh, c: Pos2, r: f32, colour: Color32, style: PointStyle) {
    let base = m.vertices.len() as u32;
    match style {
        PointStyle::Dot => {
            m.colored_vertex(c, colour);
            for s in 0..6 {
                let a = std::f32::consts::TAU * s as f32 / 6.0;
                m.colored_vertex(c + egui::vec2(r * a.cos(), r * a.sin()), colour);
            }
            for s in 0..6 {
                m.add_triangle(base, base + 1 + s, base + 1 + (s + 1) % 6);
            }
        }
        PointStyle::Square => {
            for (dx, dy) in [(-r, -r), (r, -r), (r, r), (-r, r)] {
                m.colored_vertex(c + egui::vec2(dx, dy), colour);
            }
            m.add_triangle(base, base + 1, base + 2);
            m.add_triangle(base, base + 2, base + 3);
        }
    }
}

fn segment_into(m: &mut Mesh, a: Pos2, b: Pos2, stroke: egui::Stroke) {
    let d = b - a;
    let len = d.length();
    if len < 0.5 {
        return;
    }
    let n = egui::vec2(-d.y, d.x) / len * (stroke.width / 2.0);
    let base = m.vertices.len() as u32;
    for p in [a + n, b + n, b - n, a - n] {
        m.colored_vertex(p, stroke.color);
    }
    m.add_triangle(base, base + 1, base + 2);
    m.add_triangle(base, base + 2, base + 3);
}

/// Columns and rows of a grid of `n` square-ish plots that makes them as large as the area allows.
pub fn grid_shape(n: usize, width: f32, height: f32) -> (usize, usize) {
    let n = n.max(1);
    (1..=n)
        .map(|cols| (cols, n.div_ceil(cols)))
        .max_by(|a, b| {
            let size = |(c, r): (usize, usize)| (width / c as f32).min(height / r as f32 * 1.15);
            size(*a).total_cmp(&size(*b))
        })
        .unwrap_or((1, 1))
}

/// `$1`, `$10`, `$100`, … for a log10 axis value.
fn dollars_of_log(v: f64) -> String {
    let d = 10f64.powf(v);
    if d >= 1.0 { format!("${}", crate::tester::group_thousands(&format!("{d:.0}"))) } else { format!("${d:.2}") }
}

impl CompareTab {
    pub(super) fn scatters_ui(&mut self, ui: &mut Ui, c: &Comparison) {
        let n = c.evals.len();
        ui.horizontal_wrapped(|ui| {
            ui.label("axes");
            for m in [PlotMode::Linear, PlotMode::LogLog, PlotMode::Residuals] {
                if ui.selectable_label(self.mode == m, m.label()).clicked() {
                    self.mode = m;
                }
            }
            ui.separator();
            ui.checkbox(&mut self.overlay, "overlay two pricers")
                .on_hover_text("A and B in one plot, each item's two guesses joined by a segment");
            if self.overlay {
                self.pair_ui(ui, c);
            }
            ui.separator();
            ui.checkbox(&mut self.select_tool, "select tool").on_hover_text(
                "Drag a rectangle to select items in every plot and in the Items table (else drag pans)",
            );
            if let Some(sel) = &self.selection
                && ui.button(format!("{} selected ×", sel.len())).on_hover_text("Clear the selection").clicked()
            {
                self.queue(Command::ClearSelection);
            }
            ui.label(RichText::new("scroll: zoom · double-click: reset · linked across plots").weak());
        });
        let Some(pd) = &self.plot_data else { return };
        let highlight = self.selected.or(self.hovered);
        let selection = self.selection.clone().map(Arc::new);
        let ring = ui.visuals().strong_text_color();
        // One link group and one bounds memory per mode: log10 units are not dollars.
        let link = egui::Id::unique(("compare_scatter_link", self.mode));
        let plots: Vec<(usize, Option<usize>)> = if self.overlay && n >= 2 {
            vec![(self.pair.0, Some(self.pair.1))]
        } else {
            (0..n).map(|p| (p, None)).collect()
        };
        let avail = ui.available_size();
        let (cols, rows) = grid_shape(plots.len(), avail.x, avail.y);
        let spacing = ui.spacing().item_spacing;
        let cell_w = (avail.x - spacing.x * (cols as f32 - 1.0)) / cols as f32;
        let cell_h = ((avail.y - spacing.y * (rows as f32 - 1.0)) / rows as f32).max(140.0);
        let mut hovered = None;
        let mut clicked = false;
        let mut drawn = vec![];
        let mut transforms = vec![];
        let mut commands = vec![];
        let mode = self.mode;
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            egui::Grid::new("compare_scatters").spacing(spacing).show(ui, |ui| {
                for (cell, &(p, q)) in plots.iter().enumerate() {
                    ui.vertical(|ui| {
                        ui.set_width(cell_w);
                        let title = match q {
                            Some(q) => format!("{}  vs  {}", c.evals[p].name, c.evals[q].name),
                            None => c.evals[p].line.clone(),
                        };
                        let mut t = RichText::new(title).monospace().small().strong();
                        if c.other_test[p] {
                            t = t.color(Color32::from_rgb(235, 150, 50));
                        }
                        ui.add(egui::Label::new(t).truncate());
                        let mut sets = vec![(pd.points[p].clone(), pd.colours[p].clone(), PointStyle::Dot)];
                        if let Some(q) = q {
                            sets.push((pd.points[q].clone(), pd.colours[q].clone(), PointStyle::Square));
                        }
                        let layer = Layer {
                            base: PlotItemBase::new(format!("pricer {p}")),
                            zones: pd.zones.clone(),
                            diagonal: pd.diagonal.clone(),
                            sets,
                            segments: q.is_some(),
                            highlight,
                            selection: selection.clone(),
                            rect: self.drag.filter(|d| d.0 == p).map(|d| (d.1, d.2)),
                            bounds: PlotBounds::from_min_max(pd.bounds.0, pd.bounds.1),
                            ring,
                        };
                        drawn.push(highlight);
                        let mut plot = Plot::new(("compare_scatter", p, q, mode))
                            .height(cell_h - 22.0)
                            .width(cell_w)
                            .allow_scroll(false)
                            .allow_drag(!self.select_tool)
                            .allow_boxed_zoom(!self.select_tool)
                            .show_x(false)
                            .show_y(false)
                            .x_axis_label("Ground Truth")
                            .y_axis_label(match mode {
                                PlotMode::Residuals => "Estimate − Truth",
                                _ => "Model Estimate",
                            })
                            .default_x_bounds(pd.bounds.0[0], pd.bounds.1[0])
                            .default_y_bounds(pd.bounds.0[1], pd.bounds.1[1]);
                        if q.is_none() {
                            plot = plot.link_axis(link, [true, true]).link_cursor(link, [true, true]);
                        }
                        if mode == PlotMode::LogLog {
                            plot = plot
                                .x_axis_formatter(|m, _| dollars_of_log(m.value))
                                .y_axis_formatter(|m, _| dollars_of_log(m.value));
                        } else {
                            plot = plot
                                .x_axis_formatter(|m, _| format!("${:.0}", m.value))
                                .y_axis_formatter(|m, _| format!("${:.0}", m.value));
                        }
                        let pts = pd.points[p].clone();
                        let pts_q = q.map(|q| pd.points[q].clone());
                        let r = plot.show(ui, |plot_ui| {
                            plot_ui.add(layer);
                            let pointer = plot_ui.response().hover_pos()?;
                            let t = plot_ui.transform();
                            let near = |pts: &[[f64; 2]]| {
                                pts.iter()
                                    .enumerate()
                                    .map(|(k, v)| {
                                        (k, t.position_from_point(&PlotPoint::new(v[0], v[1])).distance(pointer))
                                    })
                                    .min_by(|a, b| a.1.total_cmp(&b.1))
                            };
                            let mut best = near(&pts);
                            if let Some(b) = pts_q.as_deref().and_then(|v| near(v))
                                && best.is_none_or(|a| b.1 < a.1)
                            {
                                best = Some(b);
                            }
                            Some((best.filter(|b| b.1 <= 8.0).map(|b| b.0), plot_ui.pointer_coordinate()))
                        });
                        transforms.push((p, r.transform));
                        if let Some((near, coord)) = r.inner {
                            hovered = Some(near);
                            if r.response.clicked() {
                                clicked = true;
                            }
                            if self.select_tool
                                && let Some(coord) = coord
                            {
                                let here = [coord.x, coord.y];
                                if r.response.drag_started() {
                                    self.drag = Some((p, here, here));
                                } else if let Some(d) = &mut self.drag
                                    && d.0 == p
                                    && r.response.dragged()
                                {
                                    d.2 = here;
                                }
                            }
                        }
                        if r.response.drag_stopped()
                            && let Some((dp, a, b)) = self.drag.take()
                            && dp == p
                        {
                            commands.push(Command::SelectRect { plot: p, x: [a[0], b[0]], y: [a[1], b[1]] });
                        }
                    });
                    if (cell + 1) % cols == 0 {
                        ui.end_row();
                    }
                }
            });
        });
        self.drawn_highlights = drawn;
        self.drawn_transforms = transforms;
        match hovered {
            Some(k) if k != self.hovered => commands.push(Command::Hover(k)),
            None if self.hovered.is_some() => commands.push(Command::Hover(None)),
            _ => {}
        }
        if clicked {
            commands.push(Command::SelectItem(hovered.flatten()));
        }
        self.commands.extend(commands);
    }

    /// Two combo boxes choosing the pair A and B.
    pub(super) fn pair_ui(&mut self, ui: &mut Ui, c: &Comparison) {
        let names: Vec<&str> = c.evals.iter().map(|e| e.name.as_str()).collect();
        for (label, slot) in [("A", 0), ("B", 1)] {
            let l = ui.label(label);
            let cur = if slot == 0 { self.pair.0 } else { self.pair.1 };
            egui::ComboBox::from_id_salt(("compare_pair", slot))
                .selected_text(names.get(cur).copied().unwrap_or("—"))
                .width(150.0)
                .show_ui(ui, |ui| {
                    for (p, name) in names.iter().enumerate() {
                        if ui.selectable_label(cur == p, *name).clicked() {
                            if slot == 0 {
                                self.pair.0 = p;
                            } else {
                                self.pair.1 = p;
                            }
                        }
                    }
                })
                .response
                .labelled_by(l.id);
        }
    }
}
