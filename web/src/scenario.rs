//! The scenario page: reads the recipe from the URL (repairing what it can and saying so),
//! runs it, and shows the verdicts, headline metrics and the scenario's note.

use faultline_core::{format_value, open, Outcome, Recipe, RecipeError, ScenarioSpec, Time};
use leptos::prelude::*;

/// Reads `query` as the recipe for scenario `id`.
fn load(id: &str, query: &str) -> Result<(&'static ScenarioSpec, Recipe, Vec<RecipeError>), RecipeError> {
    let url = if query.is_empty() { format!("s={id}") } else { format!("s={id}&{}", strip_s(query)) };
    let parsed = Recipe::from_url(&url, faultline_scenarios::find)?;
    Ok((parsed.spec, parsed.recipe, parsed.problems))
}

/// The path already names the scenario; an `s=` in the query would be a duplicate key.
fn strip_s(query: &str) -> String {
    query.split('&').filter(|p| !p.starts_with("s=")).collect::<Vec<_>>().join("&")
}

#[component]
pub fn ScenarioPage(id: String, query: String) -> impl IntoView {
    match load(&id, &query) {
        Err(RecipeError::UnknownScenario { id }) => view! {
            <main class="notfound">
                <h1>"No such scenario"</h1>
                <p>"There is no scenario called " <code>{id}</code> "."</p>
                <p><a href="#/">"Back to the gallery"</a></p>
            </main>
        }
        .into_any(),
        Err(e) => view! {
            <main class="notfound">
                <h1>"This link cannot be read"</h1>
                <p>{e.to_string()}</p>
                <p><a href="#/">"Back to the gallery"</a></p>
            </main>
        }
        .into_any(),
        Ok((spec, recipe, problems)) => page(spec, recipe, problems).into_any(),
    }
}

fn page(spec: &'static ScenarioSpec, recipe: Recipe, problems: Vec<RecipeError>) -> impl IntoView {
    let (mut run, more) = open(spec, &recipe);
    run.run_until(Time(spec.default_until), u64::MAX);
    let outcome = Outcome::of(run.as_ref());
    let problems: Vec<String> = problems.iter().chain(&more).map(|p| p.to_string()).collect();
    let note = &spec.info.note;
    view! {
        <main class="scenario">
            <p><a href="#/">"← Gallery"</a></p>
            <h1>{spec.info.title}</h1>
            {(!problems.is_empty()).then(|| view! {
                <div class="banner" role="alert">
                    <strong>"Some of this link was repaired:"</strong>
                    <ul>{problems.into_iter().map(|p| view! { <li>{p}</li> }).collect::<Vec<_>>()}</ul>
                </div>
            })}
            <p class="summary">{spec.info.summary}</p>
            <p class="runline">
                "Strategy " <strong>{outcome.strategy.clone()}</strong> " · seed " {outcome.seed}
                " · " {format!("{:.0}", outcome.sim_seconds)} " s simulated · " {outcome.events} " events · fingerprint "
                <code class="fingerprint">{outcome.fingerprint.clone()}</code>
            </p>
            <h2>"Checks"</h2>
            <ul class="checks">
                {outcome.checks.iter().map(|c| {
                    let text = match (&c.why, c.violated_at_s) {
                        (Some(why), Some(at)) => format!("✗ {} — at {at:.3} s: {why}", c.label),
                        _ => format!("✓ {}", c.label),
                    };
                    view! { <li class:bad=!c.ok>{text}</li> }
                }).collect::<Vec<_>>()}
            </ul>
            <h2>"Headline metrics"</h2>
            <table class="metrics">
                {outcome.metrics.iter().map(|m| view! {
                    <tr><td>{m.label}</td><td class="num">{format_value(m.value, m.unit)}</td></tr>
                }).collect::<Vec<_>>()}
            </table>
            <h2>"Note"</h2>
            <dl class="note">
                <dt>"What can go wrong"</dt><dd>{note.what_can_go_wrong}</dd>
                <dt>"What you sacrifice"</dt><dd>{note.what_you_sacrifice}</dd>
                <dt>"At 10×"</dt><dd>{note.at_10x}</dd>
                <dt>"Resembles"</dt><dd>{note.resembles}</dd>
            </dl>
            <h3>"Try this"</h3>
            <ol>{note.try_this.iter().map(|t| view! { <li>{*t}</li> }).collect::<Vec<_>>()}</ol>
        </main>
    }
}
