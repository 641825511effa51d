//! The page in a real browser: the real server, driven through WebDriver
//! (`/usr/bin/chromedriver` and headless Chromium, spoken to over HTTP with ureq).
//! Screenshots go to `target/screenshots/`. Without chromedriver the test is skipped,
//! unless `ICEWALL_REQUIRE_BROWSER=1` (as in CI), where that is a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::common::postgres::{database, shared};
use crate::common::{
    EXAMPLE_JSON, EXAMPLE_TEXT, Gate, Server, a_done_job, one_worker_behind_a_gate, wait_until,
};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it; both end on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// How a test of the page begins: `None` where there is no browser (the test is then
/// skipped, see `browser_available`), else a server of its own and a browser.
fn a_server_and_a_browser() -> Option<(Server, Browser)> {
    if !browser_available() {
        return None;
    }
    Some((Server::start(&[]), Browser::start()))
}

/// How a test of a job's page begins: `None` where there is no browser (as in
/// `a_server_and_a_browser`), else `a_done_job(flags)` and a browser with room for the
/// job's whole page.
fn a_done_job_in_a_tall_browser(flags: &[&str]) -> Option<(Server, String, Browser)> {
    if !browser_available() {
        return None;
    }
    let (server, id) = a_done_job(flags);
    Some((server, id, Browser::tall()))
}

impl Browser {
    /// A browser with room for a job's whole page.
    fn tall() -> Browser {
        let browser = Browser::start();
        browser.resize(1280, 1500);
        browser
    }

    /// Opens the page of the job `id` and waits for its charts (`charts` names them in a
    /// failure); returns how long they took to draw, in ms. The page is loaded afresh,
    /// from a blank one: a job's page opened from another's would only change its hash,
    /// and keep the other's charts' mark.
    fn open_job_charts(&self, server: &Server, id: &str, charts: &str) -> Value {
        self.open("about:blank");
        self.open(&server.url(&format!("/#/jobs/{id}")));
        self.wait_for_charts(charts)
    }

    /// Waits for the job page's charts: the page marks the time it took to draw them.
    fn wait_for_charts(&self, charts: &str) -> Value {
        self.wait_for(
            charts,
            "return document.documentElement.dataset.chartsDrawnMs",
        )
    }

    /// Opens the overview and waits until `shown`, a condition on its figures, holds:
    /// until its first stats come, the figures are placeholders.
    fn open_overview(&self, server: &Server, shown: &str) {
        self.open(&server.url("/#/"));
        self.wait_for("the overview", &format!("return {shown}"));
    }

    /// Waits for the jobs list, where the page goes after a delete or a cancel.
    fn wait_for_the_list(&self, what: &str) {
        self.wait_for(what, "return location.hash === '#/jobs'");
    }

    fn start() -> Browser {
        // A free port for chromedriver, which cannot report one it chose itself.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let base = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver answers", || {
            agent
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|response| response.into_json::<Value>().ok())
                .is_some_and(|status| status["value"]["ready"] == true)
        });
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let created = browser.command(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            }}}),
        );
        browser.session = created["sessionId"].as_str().unwrap().to_owned();
        browser
    }

    /// A WebDriver command: its value, or the error answer.
    fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let request = self.agent.request(method, &url);
        let answer = if method == "GET" || method == "DELETE" {
            request.call()
        } else {
            request.send_json(body)
        };
        let response = match answer {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("{method} {path}: {error}"),
        };
        let status = response.status();
        let value: Value = response.into_json().unwrap();
        if status < 400 {
            Ok(value["value"].clone())
        } else {
            Err(value)
        }
    }

    /// A WebDriver command; panics on an error answer, naming it.
    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Runs `act` on the element `css` finds. The page re-renders as it polls, so an
    /// element found a moment ago may be gone: then it is found again.
    fn on_element(
        &self,
        css: &str,
        act: impl Fn(&str) -> Vec<(&'static str, String, Value)>,
    ) -> Value {
        for _ in 0..20 {
            let element = self.find(css);
            let mut last = Value::Null;
            let mut stale = false;
            for (method, path, body) in act(&element) {
                match self.try_command(method, &format!("/session/{}{path}", self.session), body) {
                    Ok(value) => last = value,
                    Err(error) if error["value"]["error"] == "stale element reference" => {
                        stale = true;
                        break;
                    }
                    Err(error) => panic!("{method} {path}: {error}"),
                }
            }
            if !stale {
                return last;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the element {css} kept going stale");
    }

    fn open(&self, url: &str) {
        self.session("POST", "/url", json!({"url": url}));
    }

    fn script(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn find(&self, css: &str) -> String {
        let found = self.session(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    fn click(&self, css: &str) {
        self.on_element(css, |element| {
            vec![("POST", format!("/element/{element}/click"), json!({}))]
        });
    }

    fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |element| {
            vec![
                ("POST", format!("/element/{element}/clear"), json!({})),
                (
                    "POST",
                    format!("/element/{element}/value"),
                    json!({"text": text}),
                ),
            ]
        });
    }

    /// The text of the element, as the user sees it (empty when hidden).
    fn text(&self, css: &str) -> String {
        self.on_element(css, |element| {
            vec![("GET", format!("/element/{element}/text"), Value::Null)]
        })
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Waits until `script` returns something truthy, and returns it.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let mut value = Value::Null;
        let truthy = crate::common::poll_until(Duration::from_secs(60), || {
            value = self.script(script);
            !(value.is_null() || value == false || value == "" || value == 0)
        });
        if !truthy {
            // What the page showed instead, for a failure seen once under load.
            let page = self.try_command(
                "POST",
                &format!("/session/{}/execute/sync", self.session),
                json!({"args": [], "script": "return {hash: location.hash, \
                    toast: (document.getElementById('toast') || {}).textContent, \
                    text: document.body.innerText.slice(0, 1500)}"}),
            );
            panic!("{what} never happened; the page: {page:?}");
        }
        value
    }

    /// The text of the dialog the page has open (`window.confirm`'s question), which it
    /// then accepts (OK) or dismisses (Cancel), as the user would.
    fn answer_dialog(&self, accept: bool) -> String {
        let text = self.session("GET", "/alert/text", Value::Null);
        let answer = if accept { "accept" } else { "dismiss" };
        self.session("POST", &format!("/alert/{answer}"), json!({}));
        text.as_str().unwrap().to_owned()
    }

    fn resize(&self, width: u32, height: u32) {
        self.session(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// Makes the page see `prefers-color-scheme: dark` (or the light scheme again), as a
    /// system in a dark scheme asks, through the DevTools protocol.
    fn prefer_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.session(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": scheme}],
            }}),
        );
        assert_eq!(
            self.script("return matchMedia('(prefers-color-scheme: dark)').matches"),
            dark
        );
    }

    /// Screenshots `{name}.png` and, in the dark scheme, `{name}-dark.png`: each scheme
    /// has colours of its own to look at.
    fn screenshots_light_and_dark(&self, name: &str) {
        self.screenshot(&format!("{name}.png"));
        self.screenshot_dark(name);
    }

    /// Screenshots `{name}-dark.png` in the dark scheme, and goes back to the light one.
    fn screenshot_dark(&self, name: &str) {
        self.prefer_dark(true);
        self.screenshot(&format!("{name}-dark.png"));
        self.prefer_dark(false);
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.session("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether the test can run; with `ICEWALL_REQUIRE_BROWSER=1` a missing browser fails it.
fn browser_available() -> bool {
    let present = Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists();
    if !present {
        assert!(
            std::env::var("ICEWALL_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "ICEWALL_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing: \
             apt-get install chromium chromium-driver"
        );
        eprintln!(
            "skipped: {CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)"
        );
    }
    present
}

/// Every visible piece of text on the page whose contrast with what is behind it is
/// under WCAG's 4.5:1, as `[text, ratio]` pairs; an element's own opacity is blended in.
const LOW_CONTRAST: &str = r"
const parse = (color) => {
  const [r, g, b, a = 1] = color.match(/[\d.]+/g).map(Number);
  return { r, g, b, a };
};
const over = (top, bottom, alpha = top.a) => ({
  r: top.r * alpha + bottom.r * (1 - alpha),
  g: top.g * alpha + bottom.g * (1 - alpha),
  b: top.b * alpha + bottom.b * (1 - alpha),
  a: 1,
});
const luminance = ({ r, g, b }) => {
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
};
const behind = (element) => {
  const chain = [];
  for (let e = element.parentElement; e; e = e.parentElement) chain.unshift(e);
  return chain.reduce((bg, e) => over(parse(getComputedStyle(e).backgroundColor), bg), { r: 255, g: 255, b: 255, a: 1 });
};
const low = [];
const selectors = 'button, .hint, .note, .error, .state, .top nav a, .token label, caption, dt, td, th, .legend li, figcaption, .tick, a, label';
for (const element of document.querySelectorAll(selectors)) {
  if (!element.getClientRects().length || !element.textContent.trim()) continue;
  const style = getComputedStyle(element);
  const opacity = Number(style.opacity);
  const under = behind(element);
  const own = over(parse(style.backgroundColor), under);
  const text = parse(element instanceof SVGElement ? style.fill : style.color);
  const fg = over(over(text, own), under, opacity);
  const bg = over(own, under, opacity);
  const [light, dark] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (light + 0.05) / (dark + 0.05);
  if (ratio < 4.5) low.push([element.textContent.trim().slice(0, 40), Math.round(ratio * 100) / 100]);
}
return low;
";

/// Checks the text on the page reads in both schemes.
fn assert_readable_light_and_dark(browser: &Browser, page: &str) {
    for dark in [false, true] {
        browser.prefer_dark(dark);
        let low = browser.script(LOW_CONTRAST);
        assert_eq!(low, json!([]), "{page}, dark: {dark}: text under 4.5:1");
    }
    browser.prefer_dark(false);
}

/// Conditions for `Browser::open_overview`: its first stats have come, with no job done,
/// with one, or with a queue depth (while jobs are held at a gate).
const NONE_DONE: &str = "document.getElementById('stat-done').textContent === '0'";
const ONE_DONE: &str = "document.getElementById('stat-done').textContent === '1'";
const DEPTH_SHOWN: &str = "document.getElementById('stat-depth').textContent !== '–'";

/// A condition: the page shows the job `id` from an answer about it. What the job's view
/// showed of a job stays in its elements while another view is on show, and until the
/// first answer about the next job comes; a location set a moment ago is routed only at
/// the page's next `hashchange`. So a condition on those elements alone may hold before
/// the page has even routed to the job. Here the view is on show, for this job, with a
/// state, which entering the view empties and only an answer about the job fills.
fn job_shown(id: &str) -> String {
    format!(
        "!document.getElementById('view-job').hidden \
         && document.getElementById('job-id').textContent === '{id}' \
         && document.getElementById('job-state').textContent !== ''"
    )
}

/// How many chart series each of the job page's charts drew.
const SERIES: &str = "return ['#chart-ice', '#chart-cost', '#chart-gantt'].map(\
    (chart) => document.querySelectorAll(chart + ' .series').length)";

#[test]
fn the_page_submits_shows_filters_and_deletes_a_job() {
    let Some((server, browser)) = a_server_and_a_browser() else {
        return;
    };
    browser.resize(1280, 2200);

    // Submit the example wall with 3 teams through the form.
    browser.open(&server.url("/#/submit"));
    browser.type_into("#config", EXAMPLE_TEXT);
    browser.type_into("#teams", "3");
    browser.click("#submit-button");
    let hash = browser.wait_for(
        "the job's page",
        "return location.hash.startsWith('#/jobs/') && location.hash",
    );
    let id = hash
        .as_str()
        .unwrap()
        .trim_start_matches("#/jobs/")
        .to_owned();
    browser.wait_for_charts("the charts");
    assert_eq!(browser.text("#job-days"), "31");
    let headline = browser.text("#job-result .headline");
    assert!(headline.contains("32,233,500 Gold Dragons"), "{headline}");
    assert!(headline.starts_with("31 days"), "{headline}");
    // Three profiles stacked, one cost line, three teams.
    assert_eq!(browser.script(SERIES), json!([3, 1, 3]));
    assert_eq!(browser.text("#job-state"), "done");
    assert_eq!(browser.text("#job-teams"), "3");
    assert_eq!(
        browser.script("return document.querySelectorAll('#profiles-rows tr').length"),
        3
    );
    // The config as the heights it was given, a row a profile.
    browser.wait_for(
        "the heights",
        "return document.querySelectorAll('#heights-rows tr').length === 3",
    );
    assert_eq!(
        browser.script(
            "return [...document.querySelectorAll('#heights-rows td')].map((td) => td.textContent)"
        ),
        json!(["21 25 28", "17", "17 22 17 19 17"])
    );
    assert!(browser.text("#heights-note").is_empty());
    assert_readable_light_and_dark(&browser, "the job's page");
    browser.screenshots_light_and_dark("job");

    // A bad config: its error is shown at its line and column.
    browser.open(&server.url("/#/submit"));
    browser.type_into("#config", "21 25 28\n17 31\n");
    browser.type_into("#teams", "");
    browser.click("#submit-button");
    browser.wait_for(
        "the config error",
        "return !document.getElementById('config-error').hidden",
    );
    let error = browser.text("#config-error");
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("column 2"), "{error}");
    assert!(error.contains("2 | 17 31"), "{error}");
    assert_eq!(
        browser.script(
            "const box = document.getElementById('config-error'); \
             return [box.dataset.line, box.dataset.column, \
             document.getElementById('config').getAttribute('aria-invalid')]"
        ),
        json!(["2", "2", "true"])
    );
    // The offending height is selected in the text area.
    assert_eq!(
        browser.script(
            "const t = document.getElementById('config'); \
             return t.value.slice(t.selectionStart, t.selectionEnd)"
        ),
        "31"
    );
    browser.screenshot_dark("submit-error");

    // The overview counts it.
    browser.open_overview(&server, ONE_DONE);
    assert_eq!(browser.text("#stat-failed"), "0");
    assert!(browser.text("#stat-workers").ends_with("of 2"));
    assert_eq!(
        browser.script("return document.querySelectorAll('#chart-throughput .series').length"),
        2
    );
    // A node on its own has no nodes panel.
    assert_eq!(
        browser.script("return document.getElementById('nodes-panel').hidden"),
        true
    );
    assert_readable_light_and_dark(&browser, "the overview");
    browser.screenshots_light_and_dark("overview");

    // The list, filtered by state.
    browser.open(&server.url("/#/jobs"));
    let row_link = format!("#jobs-rows a[href='#/jobs/{id}']");
    browser.wait_for(
        "the job in the list",
        &format!("return !!document.querySelector(\"{row_link}\")"),
    );
    browser.click("#jobs-status option[value='failed']");
    browser.wait_for(
        "the failed jobs",
        "return document.getElementById('jobs-rows').textContent === 'No failed jobs.'",
    );
    browser.click("#jobs-status option[value='done']");
    browser.wait_for(
        "the done jobs",
        &format!("return !!document.querySelector(\"{row_link}\")"),
    );
    browser.screenshot("jobs.png");

    // Delete it from its page.
    browser.click(&row_link);
    // The charts' mark and the days are still there from the first visit: the page shows
    // the job's result again once an answer about it came (see `job_shown`).
    browser.wait_for(
        "the job's page again",
        &format!(
            "return {} && !document.getElementById('job-result').hidden && \
             !!document.documentElement.dataset.chartsDrawnMs && \
             document.getElementById('job-days').textContent === '31'",
            job_shown(&id)
        ),
    );
    browser.click("#job-delete");
    let question = browser.answer_dialog(true);
    assert!(question.starts_with("Delete job"), "{question}");
    browser.wait_for_the_list("the list after the delete");
    wait_until("the job is gone", || {
        server.get(&format!("/api/get_results/{id}")).status == 404
    });
}

#[test]
fn a_million_section_wall_draws_from_reduced_chart_data() {
    if !browser_available() {
        return;
    }
    let server = Server::start(&[]);
    // One team on 1,000,000 sections of 15 feet each: 15,000,000 days.
    let profile = vec!["15"; 2000].join(" ");
    let wall = vec![profile.as_str(); 500].join("\n");
    let id = server.submit_text("?num_teams=1", &wall);
    let result = server.wait_finished(&id);
    assert_eq!(result["data"]["days"], 15_000_000);

    let chart = server
        .get(&format!("/api/jobs/{id}/chart?width=1200"))
        .json();
    assert_eq!(chart["buckets"], 1200);
    assert_eq!(chart["bucket_days"], 12_500);
    let ice: u64 = chart["ice"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|series| series["ice"].as_array().unwrap())
        .map(|ice| ice.as_u64().unwrap())
        .sum();
    assert_eq!(ice, result["data"]["ice"].as_u64().unwrap());
    assert_eq!(chart["cost"][1199], result["data"]["cost"]);

    let browser = Browser::start();
    for (width, name) in [(1280, "big-wall-1280.png"), (375, "big-wall-375.png")] {
        browser.resize(width, 2000);
        let drawn = browser.open_job_charts(&server, &id, "the big wall's charts");
        // 8 largest profiles and the others; the cost; one team.
        assert_eq!(browser.script(SERIES), json!([9, 1, 1]));
        // Ten profiles of its heights, each cut short, and how many are not shown.
        browser.wait_for(
            "the big wall's heights",
            "return document.querySelectorAll('#heights-rows tr').length === 10",
        );
        let first = browser.text("#heights-rows td");
        assert!(
            first.starts_with("15 15 15") && first.ends_with("… and 1,960 more (2,000 sections)"),
            "{first}"
        );
        assert_eq!(
            browser.text("#heights-note"),
            "And 490 more profiles, not shown."
        );
        assert_eq!(browser.text("#job-days"), "15,000,000");
        let page_width = browser.script("return document.documentElement.scrollWidth");
        eprintln!(
            "{width} px: navigation to charts drawn in {drawn} ms (performance.now()); page {page_width} px wide"
        );
        assert!(
            page_width.as_u64().unwrap() <= u64::from(width),
            "the page scrolls sideways at {width} px"
        );
        browser.screenshot(name);
    }
}

#[test]
fn the_overview_lists_a_clusters_nodes() {
    if !browser_available() {
        return;
    }
    let Some((_, url)) = database() else { return };
    let args = ["--database-url", url.as_str(), "--lease", "3s"];
    let first = Server::start(&args);
    let second = Server::start(&args);
    let id = second.submit_json(EXAMPLE_JSON);
    first.wait_finished(&id);

    let browser = Browser::start();
    browser.resize(1280, 1400);
    browser.open(&first.url("/#/"));
    browser.wait_for(
        "two nodes on the overview",
        "return document.querySelectorAll('#nodes-rows tr').length === 2",
    );
    assert_eq!(
        browser.script("return document.getElementById('nodes-panel').hidden"),
        false
    );
    let rows = browser.text("#nodes-rows");
    for server in [&first, &second] {
        let address = server.base.trim_start_matches("http://");
        assert!(rows.contains(address), "{rows}");
    }
    // The node serving the page says so.
    assert_eq!(
        browser.script(
            "return [...document.querySelectorAll('#nodes-rows th')]\
             .filter((th) => th.textContent.endsWith('(this one)')).length"
        ),
        1
    );
    assert!(!rows.contains("stale"), "{rows}");
    browser.screenshots_light_and_dark("overview-cluster");

    // A node killed without a goodbye is shown stale once a lease has passed.
    second.kill9();
    browser.wait_for(
        "the killed node shown stale",
        "return document.querySelectorAll('#nodes-rows tr.stale .state.stale').length === 1",
    );
    let caption = browser.text("#nodes-caption");
    assert!(
        caption.ends_with("; 1 stale: silent for a whole lease, the others take back its jobs"),
        "{caption}"
    );
    assert_readable_light_and_dark(&browser, "the overview of a cluster");
    browser.screenshot("overview-cluster-stale.png");
}

/// The overview's labels: its cards', the throughput chart's caption, and the shutdown's
/// heading, button and hint.
const OVERVIEW_LABELS: &str = "return [...document.querySelectorAll('#view-overview dt'), \
    ...['#throughput-caption', '#view-overview > h2', '#shutdown', '#shutdown + .hint'].map((css) => document.querySelector(css))]\
    .map((label) => label.textContent)";

#[test]
fn a_clusters_overview_says_which_figures_are_the_nodes_own() {
    if !browser_available() {
        return;
    }
    let Some(postgres) = shared() else { return };
    // On its own, the server is the only scope there is: the labels say none.
    let alone = Server::start(&[]);
    let browser = Browser::tall();
    browser.open_overview(&alone, NONE_DONE);
    assert_eq!(
        browser.script(OVERVIEW_LABELS),
        json!([
            "Queued",
            "Running",
            "Done",
            "Failed",
            "Queue depth",
            "Workers busy",
            "Queue wait p50 / p95",
            "Run time p50 / p95",
            "Jobs finished per minute, since the server started (done and failed)",
            "Server",
            "Shut down the server",
            "Queued and running jobs finish first. Needs the admin token if the server has one."
        ])
    );

    // A node: the jobs by state and the queue are the cluster's (counted in the
    // database), the rest this node's (its own workers and measurements).
    let url = postgres.create_database();
    let node = Server::start(&["--database-url", url.as_str()]);
    browser.open(&node.url("/#/"));
    browser.wait_for(
        "the nodes panel",
        "return !document.getElementById('nodes-panel').hidden",
    );
    assert_eq!(
        browser.script(OVERVIEW_LABELS),
        json!([
            "Queued in the cluster",
            "Running in the cluster",
            "Done in the cluster",
            "Failed in the cluster",
            "Queue depth of the cluster",
            "Workers busy on this node",
            "Queue wait p50 / p95 on this node",
            "Run time p50 / p95 on this node",
            "Jobs this node finished per minute, since this node started (done and failed)",
            "This node",
            "Shut down this node",
            "The jobs it has claimed finish first; the other nodes go on. \
             Needs the admin token if the node has one."
        ])
    );
    assert_readable_light_and_dark(&browser, "the overview of a node");
    browser.screenshot("overview-node-scopes.png");

    // Its shutdown's question and answer: this node, and the jobs it has claimed.
    browser.script(
        "window.confirm = (question) => { window.asked = question; return true; }; return null",
    );
    browser.click("#shutdown");
    let toast = browser.wait_for(
        "the shutdown's answer",
        "const toast = document.getElementById('toast'); \
         return toast.classList.contains('shown') && toast.textContent",
    );
    assert_eq!(
        toast,
        "Shutting down this node; 0 jobs it has claimed still to finish."
    );
    assert_eq!(
        browser.script("return window.asked"),
        "Shut this node down? The jobs it has claimed finish first, then it exits; \
         the other nodes go on."
    );
    assert!(
        browser
            .script("return document.getElementById('draining').textContent")
            .as_str()
            .unwrap()
            .starts_with("This node is shutting down"),
    );
}

/// The ice chart's caption and the names in its legend.
const ICE_LEGEND: &str = "return [document.getElementById('ice-caption').textContent, \
    [...document.querySelectorAll('#ice-legend li')].map((item) => item.textContent)]";

#[test]
fn a_wall_of_identical_profiles_draws_one_and_says_how_many() {
    if !browser_available() {
        return;
    }
    let server = Server::start(&[]);
    let wall = ["0 5 10 15 20"; 10].join("\n");
    let crews = server.submit_text("", &wall);
    // With fewer teams than sections, identical profiles are built at different times.
    let teams = server.submit_text("?num_teams=12", &wall);
    server.wait_finished(&crews);
    server.wait_finished(&teams);

    let browser = Browser::tall();
    browser.open_job_charts(&server, &crews, "the uniform wall's charts");
    // One profile's ice, not ten equal bands; the cost; no teams.
    assert_eq!(browser.script(SERIES), json!([1, 1, 0]));
    let legend = browser.script(ICE_LEGEND);
    let caption = legend[0].as_str().unwrap();
    assert!(caption.contains("10 identical profiles"), "{caption}");
    assert!(caption.contains("the wall uses 10 times"), "{caption}");
    assert_eq!(legend[1], json!(["each profile"]), "{legend}");
    // Its top is one profile's first day: 5 sections at 195 cubic yards each.
    let top = browser
        .script("return document.querySelector('#chart-ice svg').getAttribute('aria-label')");
    assert!(top.as_str().unwrap().contains("975"), "{top}");
    browser.screenshots_light_and_dark("job-uniform");

    browser.open_job_charts(&server, &teams, "the uniform wall's charts with teams");
    // Built one after another, the profiles differ by day: stacked as any wall.
    assert_eq!(browser.script(SERIES), json!([9, 1, 12]));
    let legend = browser.script(ICE_LEGEND);
    assert!(
        !legend[0].as_str().unwrap().contains("identical"),
        "{legend}"
    );
    browser.screenshot("job-uniform-teams.png");
}

#[test]
fn the_cancel_button_cancels_a_queued_job_and_never_deletes_a_finished_one() {
    if !browser_available() {
        return;
    }
    let (gate, server) = one_worker_behind_a_gate();
    let running = server.submit_json(EXAMPLE_JSON);
    let queued = server.submit_json(EXAMPLE_JSON);
    let finishing = server.submit_json(EXAMPLE_JSON);
    let browser = Browser::start();
    // The button's text stays from the job shown before: the page must show this job.
    let cancel_shown = |id: &str| {
        format!(
            "return {} && \
             document.getElementById('job-delete').textContent === 'Cancel this job'",
            job_shown(id)
        )
    };
    browser.open(&server.url(&format!("/#/jobs/{queued}")));
    browser.wait_for("the cancel button", &cancel_shown(&queued));
    browser.click("#job-delete");
    let question = browser.answer_dialog(true);
    assert!(question.starts_with("Cancel job"), "{question}");
    browser.wait_for_the_list("the list after the cancel");
    assert_eq!(
        server.get(&format!("/api/get_results/{queued}")).status,
        404
    );

    // A job the page saw queued, finished by the time of the click, keeps its result.
    // Every look the page takes from here is counted, and can be held back: a look
    // answered after the job finished would show it done, and make the click a DELETE.
    browser.script(&format!(
        "window.inFlight = 0; window.held = false; const fetchNow = window.fetch; \
         window.fetch = (...request) => {{ \
           if (window.held) return new Promise(() => {{}}); \
           window.inFlight += 1; \
           return fetchNow(...request).finally(() => {{ window.inFlight -= 1; }}); \
         }}; \
         location.hash = '#/jobs/{finishing}'; return null"
    ));
    browser.wait_for("the cancel button again", &cancel_shown(&finishing));
    // The page's looks so far all answered while the job was queued: it shows a
    // queued job, and looks no more.
    browser.script("window.held = true; return null");
    browser.wait_for("the page's looks to end", "return window.inFlight === 0");
    gate.open();
    server.wait_finished(&running);
    assert_eq!(server.wait_finished(&finishing)["status"], "done");
    // Let go of and clicked in one script: a poll in between (one every 2 s) would show
    // the job done, and the click would then be a DELETE. The question is answered yes
    // at once: a dialog open in a script's run would be dismissed by the driver.
    browser.script(
        "window.held = false; window.confirm = () => true; \
         document.getElementById('job-delete').click(); return null",
    );
    browser.wait_for(
        "the refusal",
        "return document.body.textContent.includes('only a queued job can be cancelled')",
    );
    assert_eq!(
        server.get(&format!("/api/get_results/{finishing}")).status,
        200
    );
}

#[test]
fn a_screen_wider_than_the_servers_widest_chart_still_draws_it() {
    let Some((server, id, browser)) = a_done_job_in_a_tall_browser(&["--max-chart-width", "300"])
    else {
        return;
    };
    browser.open_job_charts(&server, &id, "the charts");
    assert_eq!(browser.script(SERIES), json!([3, 1, 3]));
    let asked = browser.script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name)\
         .filter((name) => name.includes('/chart?'))",
    );
    assert!(
        asked[0].as_str().unwrap().ends_with("/chart?width=300"),
        "{asked}"
    );
}

/// Wraps the page's `fetch` so that a test can hold its requests: while `window.holding`
/// they wait, unanswered, until `window.release()` sends them. A held request honours
/// its abort signal, as a request to a server that never answers does.
const HOLD_FETCH: &str = "window.holding = false; window.waiting = []; \
    const fetchNow = window.fetch; \
    window.fetch = (path, options = {}) => { \
      if (!window.holding) return fetchNow(path, options); \
      return new Promise((resolve, reject) => { \
        window.waiting.push(() => resolve(fetchNow(path, options))); \
        if (options.signal) options.signal.addEventListener('abort', () => reject(options.signal.reason)); \
      }); \
    }; \
    window.release = () => { window.holding = false; window.waiting.splice(0).forEach((send) => send()); };";

#[test]
fn a_request_that_is_never_answered_does_not_stop_the_polling() {
    let Some((server, browser)) = a_server_and_a_browser() else {
        return;
    };
    browser.open_overview(&server, NONE_DONE);
    // The next poll goes to a server that never answers (a dropped connection).
    browser.script(&format!(
        "{HOLD_FETCH} window.holding = true; \
         const hold = window.fetch; \
         window.fetch = (...request) => {{ const held = hold(...request); window.holding = false; return held; }}; \
         return null"
    ));
    browser.wait_for("the held poll", "return window.waiting.length === 1");
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    browser.wait_for(
        "the overview after the lost poll",
        &format!("return {ONE_DONE}"),
    );
}

#[test]
fn a_refresh_asked_for_during_another_is_not_dropped() {
    if !browser_available() {
        return;
    }
    let (server, id) = a_done_job(&[]);
    let browser = Browser::start();
    browser.open(&server.url("/#/jobs"));
    let row = format!("!!document.querySelector(\"#jobs-rows a[href='#/jobs/{id}']\")");
    browser.wait_for("the job in the list", &format!("return {row}"));
    // No polls (the tab looks hidden): only what the user does refreshes the list. The
    // filter is changed twice, the second time while the first list is on its way.
    browser.script(&format!(
        "{HOLD_FETCH} Object.defineProperty(document, 'hidden', {{ value: true, configurable: true }}); \
         window.holding = true; \
         const filter = document.getElementById('jobs-status'); \
         filter.value = 'failed'; filter.dispatchEvent(new Event('change')); \
         filter.value = 'done'; filter.dispatchEvent(new Event('change')); \
         window.release(); return null"
    ));
    // The job's row is there before the refreshes too: the caption says which list
    // came last, and it is waited for, as the list comes in its own time.
    let done_list = format!(
        "return document.getElementById('jobs-caption').textContent === 'Jobs done, newest first' && {row}"
    );
    browser.wait_for("the done jobs", &done_list);
    assert_eq!(browser.text("#jobs-caption"), "Jobs done, newest first");
}

/// The jobs list's pager and rows: `[older disabled, newer disabled, caption, rows]`.
const JOBS_PAGER: &str = "return [document.getElementById('jobs-older').disabled, \
    document.getElementById('jobs-newer').disabled, \
    document.getElementById('jobs-caption').textContent, \
    document.querySelectorAll('#jobs-rows a').length]";

#[test]
fn older_jobs_are_offered_only_when_there_are_some() {
    if !browser_available() {
        return;
    }
    // Exactly a page of jobs (the page shows 20): there is nothing older.
    let server = Server::start(&[]);
    let ids: Vec<String> = (0..20).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    let browser = Browser::start();
    browser.open(&server.url("/#/jobs"));
    browser.wait_for(
        "a whole page of jobs",
        "return document.querySelectorAll('#jobs-rows a').length === 20",
    );
    assert_eq!(
        browser.script(JOBS_PAGER),
        json!([true, true, "Jobs, newest first", 20])
    );

    // One more: the first job is now on a page of its own, the last.
    server.submit_json(EXAMPLE_JSON);
    browser.wait_for(
        "older jobs offered",
        "return !document.getElementById('jobs-older').disabled",
    );
    browser.click("#jobs-older");
    let first = format!(
        "return !!document.querySelector(\"#jobs-rows a[href='#/jobs/{}']\")",
        ids[0]
    );
    browser.wait_for("the second page", &first);
    assert_eq!(
        browser.script(JOBS_PAGER),
        json!([true, false, "Jobs, newest first, page 2", 1])
    );
    browser.click("#jobs-newer");
    browser.wait_for(
        "the first page again",
        "return !document.getElementById('jobs-older').disabled \
           && document.getElementById('jobs-newer').disabled",
    );

    // The older job deleted after the page last looked (the polls stopped, as in a
    // hidden tab): Older finds nothing and stays on the page shown, not an empty one.
    browser.script(
        "Object.defineProperty(document, 'hidden', { value: true, configurable: true }); return null",
    );
    browser.wait_for("no refresh under way", "return !refresh.running");
    for id in &ids {
        server.wait_finished(id);
    }
    assert_eq!(
        server
            .request("DELETE", &format!("/api/jobs/{}", ids[0]))
            .status,
        200
    );
    browser.click("#jobs-older");
    browser.wait_for(
        "Older answered",
        "return document.getElementById('jobs-older').disabled",
    );
    assert_eq!(
        browser.script(JOBS_PAGER),
        json!([true, true, "Jobs, newest first", 20])
    );
}

#[test]
fn a_server_that_stops_answering_is_said_so_until_it_is_back() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    let browser = Browser::start();
    browser.open_overview(&server, ONE_DONE);
    let page = server.url("/#/");
    server.kill9();
    let trouble = browser.wait_for(
        "the trouble said",
        "const note = document.getElementById('trouble'); \
         return note && !note.hidden && note.textContent",
    );
    assert!(
        trouble.as_str().unwrap().contains("cannot be reached"),
        "{trouble}"
    );
    // The numbers still shown are the last ones known.
    assert_eq!(browser.text("#stat-done"), "1");
    let again = Server::start_in(dir.path(), &["--bind", &address]);
    assert_eq!(again.url("/#/"), page);
    browser.wait_for(
        "the trouble over",
        "return document.getElementById('trouble').hidden",
    );
    assert_eq!(browser.text("#stat-done"), "1");
}

#[test]
fn charts_that_failed_to_load_are_asked_for_again() {
    let Some((server, id, browser)) = a_done_job_in_a_tall_browser(&[]) else {
        return;
    };
    browser.open(&server.url("/#/"));
    // The first request for the charts is lost, as on a network that drops for a moment.
    browser.script(&format!(
        "window.lost = 0; const fetchNow = window.fetch; \
         window.fetch = (path, ...rest) => {{ \
           if (String(path).includes('/chart?') && !window.lost++) return Promise.reject(new TypeError('Failed to fetch')); \
           return fetchNow(path, ...rest); \
         }}; \
         location.hash = '#/jobs/{id}'; return null"
    ));
    browser.wait_for_charts("the charts");
    assert_eq!(browser.script(SERIES), json!([3, 1, 3]));
    assert_eq!(browser.text("#job-days"), "31");
}

#[test]
fn a_job_opened_after_another_does_not_show_the_others_state() {
    if !browser_available() {
        return;
    }
    let (gate, server) = one_worker_behind_a_gate();
    gate.open();
    let first = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&first);
    gate.close();
    let later = server.submit_json(EXAMPLE_JSON);
    let browser = Browser::tall();
    browser.open_job_charts(&server, &first, "the first job's charts");
    assert_eq!(browser.text("#job-state"), "done");
    // The next job's answers are held: until they come, nothing of the first is shown.
    browser.script(&format!(
        "{HOLD_FETCH} window.holding = true; location.hash = '#/jobs/{later}'; return null"
    ));
    browser.wait_for(
        "the next job's page",
        &format!("return document.getElementById('job-id').textContent === '{later}'"),
    );
    assert_eq!(
        browser.script(
            "return ['job-state', 'job-created', 'job-finished', 'job-sections']\
             .map((id) => document.getElementById(id).textContent)"
        ),
        json!(["", "–", "–", "–"])
    );
    browser.script("window.release(); return null");
    // Held at the gate, it has not finished.
    browser.wait_for(
        "the next job shown",
        "return ['queued', 'running'].includes(document.getElementById('job-state').textContent)",
    );
    assert_ne!(browser.text("#job-created"), "–");
    assert_eq!(browser.text("#job-finished"), "–");
    gate.open();
    server.wait_finished(&later);
}

#[test]
fn a_job_deleted_elsewhere_is_shown_gone() {
    let Some((server, id, browser)) = a_done_job_in_a_tall_browser(&[]) else {
        return;
    };
    browser.open_job_charts(&server, &id, "the charts");
    assert_eq!(
        server.request("DELETE", &format!("/api/jobs/{id}")).status,
        200
    );
    browser.wait_for(
        "the job shown gone",
        "return document.getElementById('job-result').hidden",
    );
    assert!(browser.text("#job-reason").contains("deleted"));
    assert_eq!(browser.text("#job-state"), "gone");
    // Neither its old config nor a button to delete it again.
    assert_eq!(
        browser.script(
            "return [document.getElementById('job-heights').hidden, \
             document.getElementById('job-actions').hidden]"
        ),
        json!([true, true])
    );
}

#[test]
fn a_number_of_teams_the_field_cannot_read_is_refused_with_a_message() {
    let Some((server, browser)) = a_server_and_a_browser() else {
        return;
    };
    browser.open(&server.url("/#/submit"));
    browser.type_into("#config", EXAMPLE_TEXT);
    // A number field reads "3e" as empty: it must not become a crew on every section.
    browser.type_into("#teams", "3e");
    browser.click("#submit-button");
    let message = browser.wait_for(
        "the teams error",
        "const box = document.getElementById('teams-error'); \
         return box && !box.hidden && box.textContent",
    );
    assert!(
        message.as_str().unwrap().contains("whole number"),
        "{message}"
    );
    assert_eq!(
        browser.script(
            "return [document.getElementById('teams').getAttribute('aria-invalid'), \
             document.getElementById('config').getAttribute('aria-invalid'), \
             document.activeElement.id, location.hash]"
        ),
        json!(["true", null, "teams", "#/submit"])
    );
    assert_eq!(server.listed_jobs(), 0);
}

#[test]
fn the_skip_link_moves_to_the_content_and_stays_on_the_view() {
    let Some((server, browser)) = a_server_and_a_browser() else {
        return;
    };
    browser.open(&server.url("/#/jobs"));
    browser.wait_for(
        "the list",
        "return document.getElementById('jobs-rows').textContent === 'No jobs yet.'",
    );
    browser.script("document.querySelector('.skip').focus(); return null");
    browser.click(".skip");
    assert_eq!(
        browser.script(
            "return [location.hash, document.getElementById('view-jobs').hidden, \
             document.getElementById('view-missing').hidden, document.activeElement.id]"
        ),
        json!(["#/jobs", false, true, "main"])
    );
}

#[test]
fn charts_that_take_longer_than_a_poll_may_are_waited_for() {
    let Some((server, id, browser)) = a_done_job_in_a_tall_browser(&[]) else {
        return;
    };
    browser.open(&server.url("/#/"));
    // The charts come after 11 s, as a big wall's may from a slow disk (a poll is given
    // up after 10 s).
    browser.script(&format!(
        "const fetchNow = window.fetch; \
         window.fetch = (path, options = {{}}) => {{ \
           if (!String(path).includes('/chart?')) return fetchNow(path, options); \
           return new Promise((resolve, reject) => {{ \
             const timer = setTimeout(() => resolve(fetchNow(path, options)), 11000); \
             if (options.signal) options.signal.addEventListener('abort', () => {{ clearTimeout(timer); reject(options.signal.reason); }}); \
           }}); \
         }}; \
         location.hash = '#/jobs/{id}'; return null"
    ));
    browser.wait_for_charts("the charts");
    assert_eq!(browser.script(SERIES), json!([3, 1, 3]));
}

#[test]
fn profile_pages_asked_faster_than_answered_show_the_page_asked_last() {
    if !browser_available() {
        return;
    }
    let server = Server::start(&[]);
    // 50 profiles: three pages of 20.
    let wall = vec!["20 21 22"; 50].join("\n");
    let id = server.submit_text("", &wall);
    server.wait_finished(&id);
    let browser = Browser::tall();
    browser.open(&server.url(&format!("/#/jobs/{id}")));
    let first_row = "return document.querySelector('#profiles-rows th')?.textContent";
    browser.wait_for(
        "the first page of profiles",
        &format!("{first_row} === '1'"),
    );
    browser.click("#profiles-next");
    browser.wait_for(
        "the second page of profiles",
        &format!("{first_row} === '21'"),
    );
    // Next, then Previous before the third page came: the page asked last is the second.
    // Their answers are held, then let go in the other order: the third page's comes last.
    let asked = browser.script(
        "window.heldPages = []; window.answeredPages = 0; const fetchNow = window.fetch; \
         window.fetchNow = fetchNow; \
         window.fetch = (path, options = {}) => { \
           if (!String(path).includes('/profiles?')) return fetchNow(path, options); \
           return new Promise((resolve) => window.heldPages.push({ path: String(path), send: () => \
             resolve(fetchNow(path, options).then((answer) => answer.text().then((text) => { \
               window.answeredPages += 1; \
               return new Response(text, { status: answer.status, headers: answer.headers }); \
             }))) })); \
         }; \
         document.getElementById('profiles-next').click(); \
         document.getElementById('profiles-prev').click(); \
         return window.heldPages.map((page) => page.path.replace(/.*\\?/, ''))",
    );
    assert_eq!(asked, json!(["after=40&limit=20", "after=20&limit=20"]));
    browser.script("window.heldPages[1].send(); return null");
    browser.wait_for(
        "the second page's answer",
        "return window.answeredPages === 1",
    );
    browser.script("window.heldPages[0].send(); return null");
    browser.wait_for(
        "the third page's answer",
        "return window.answeredPages === 2",
    );
    // Past the answer's own handling (a few tasks), the table shows the second page still.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        browser.script(
            "return [document.querySelector('#profiles-rows th').textContent, \
             document.querySelectorAll('#profiles-rows tr').length, \
             document.getElementById('profiles-prev').disabled, \
             document.getElementById('profiles-next').disabled]"
        ),
        json!(["21", 20, false, false])
    );
    // And the pager goes on from there.
    browser.script("window.fetch = window.fetchNow; return null");
    browser.click("#profiles-next");
    browser.wait_for(
        "the third page of profiles",
        &format!("{first_row} === '41'"),
    );
    assert_eq!(
        browser.script("return document.querySelectorAll('#profiles-rows tr').length"),
        10
    );
}

#[test]
fn deleting_a_job_asks_first() {
    let Some((server, id, browser)) = a_done_job_in_a_tall_browser(&[]) else {
        return;
    };
    browser.open_job_charts(&server, &id, "the charts");
    // Cancel in the dialog: nothing is sent, the job stays.
    browser.click("#job-delete");
    let question = browser.answer_dialog(false);
    assert_eq!(
        question,
        format!(
            "Delete job {}? Its result and files are removed for good.",
            &id[..8]
        )
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.get(&format!("/api/jobs/{id}")).status, 200);
    assert_eq!(
        browser.script("return location.hash"),
        format!("#/jobs/{id}")
    );
    // OK in the dialog: deleted.
    browser.click("#job-delete");
    browser.answer_dialog(true);
    browser.wait_for_the_list("the list after the delete");
    assert_eq!(server.get(&format!("/api/jobs/{id}")).status, 404);
}

#[test]
fn the_delete_button_is_disabled_while_its_request_is_out() {
    let Some((server, id, browser)) = a_done_job_in_a_tall_browser(&[]) else {
        return;
    };
    browser.open_job_charts(&server, &id, "the charts");
    // Every question answered yes; the DELETEs held until let go.
    browser.script(
        "window.confirm = () => true; window.heldDeletes = []; const fetchNow = window.fetch; \
         window.fetch = (path, options = {}) => options.method !== 'DELETE' ? fetchNow(path, options) \
           : new Promise((resolve) => window.heldDeletes.push(() => resolve(fetchNow(path, options)))); \
         return null",
    );
    // A double click.
    browser.click("#job-delete");
    browser.click("#job-delete");
    assert_eq!(
        browser.script(
            "return [window.heldDeletes.length, document.getElementById('job-delete').disabled]"
        ),
        json!([1, true])
    );
    browser.script("window.heldDeletes.forEach((send) => send()); return null");
    browser.wait_for_the_list("the list after the delete");
    assert_eq!(server.get(&format!("/api/jobs/{id}")).status, 404);
    // No second DELETE went out after the first's answer, to say the job is unknown.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(browser.script("return window.heldDeletes.length"), 1);
    assert_eq!(
        browser.script("return document.getElementById('job-delete').disabled"),
        false
    );
}

#[test]
fn a_running_jobs_elapsed_time_is_by_the_servers_clock() {
    if !browser_available() {
        return;
    }
    let (gate, server) = one_worker_behind_a_gate();
    let id = server.submit_json(EXAMPLE_JSON);
    let browser = Browser::tall();
    browser.open_overview(&server, DEPTH_SHOWN);
    // The job is at least 2 s old (the Date header the page reads is to the second).
    std::thread::sleep(Duration::from_secs(2));
    // The browser's clock an hour behind the server's, then an hour ahead, changed while
    // the page is on the overview and no look at the job is on its way.
    for shift in [-3_600_000, 3_600_000] {
        browser.script("location.hash = '#/'; return null");
        std::thread::sleep(Duration::from_secs(1));
        browser.script(&format!(
            "window.RealDate = window.RealDate || Date; \
             const Real = window.RealDate; \
             window.Date = class extends Real {{ \
               constructor(...time) {{ super(...(time.length ? time : [Real.now() + {shift}])); }} \
               static now() {{ return Real.now() + {shift}; }} \
             }}; \
             location.hash = '#/jobs/{id}'; return null"
        ));
        let elapsed = browser.wait_for(
            "the elapsed time",
            "const state = document.getElementById('job-state').textContent; \
             const elapsed = document.getElementById('job-elapsed').textContent; \
             return ['queued', 'running'].includes(state) && elapsed !== '–' && elapsed",
        );
        let elapsed = elapsed.as_str().unwrap();
        // Seconds, as by the server's clock: not -3600 s, nor 60 min.
        let seconds: f64 = elapsed
            .strip_suffix(" s")
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("shift {shift}: elapsed {elapsed}"));
        assert!(
            (1.0..60.0).contains(&seconds),
            "shift {shift}: elapsed {elapsed}"
        );
    }
    gate.open();
    server.wait_finished(&id);
}

#[test]
fn the_throughput_charts_tooltips_are_formatted() {
    if !browser_available() {
        return;
    }
    let server = Server::start(&[]);
    let browser = Browser::tall();
    browser.open_overview(&server, NONE_DONE);
    // Stats as a busy server's, up for over an hour, 12 s into its minute: thousands of
    // jobs a minute.
    browser.script(
        "const fetchNow = window.fetch; \
         window.fetch = async (path, options) => { \
           const answer = await fetchNow(path, options); \
           if (!String(path).startsWith('/api/stats')) return answer; \
           const stats = await answer.json(); \
           Object.assign(stats.throughput, { intervals_before_start: 0, current_interval_ms: 12000 }); \
           const intervals = stats.throughput.intervals; \
           intervals[intervals.length - 1] = { done: 12345, failed: 1234 }; \
           intervals[intervals.length - 2] = { done: 1500, failed: 0 }; \
           intervals[intervals.length - 4] = { done: 1500, failed: 0 }; \
           return new Response(JSON.stringify(stats), { status: 200, headers: { 'Content-Type': 'application/json' } }); \
         }; \
         return null",
    );
    let titles = browser.wait_for(
        "the busy minutes drawn",
        "const titles = [...document.querySelectorAll('#chart-throughput rect title')].map((t) => t.textContent); \
         return titles.length === 4 && titles",
    );
    assert_eq!(
        titles,
        json!([
            "3 min ago: 1,500 done",
            "1 min ago: 1,500 done",
            "the last 12 s: 12,345 done",
            "the last 12 s: 1,234 failed"
        ])
    );
    // The minute under way has had 12 s: its bar is a fifth as wide as a whole minute's,
    // and ends at the axis's end, now.
    let bars = browser.script(
        "const plot = document.querySelector('#chart-throughput .axis').getBBox().width; \
         return [...document.querySelectorAll('#chart-throughput .bar-done rect')].map((bar) => \
           [Number(bar.getAttribute('x')), Number(bar.getAttribute('width')), plot])",
    );
    let [minute, _, under_way] = [0, 1, 2].map(|k| {
        let bar = &bars[k];
        (
            bar[0].as_f64().unwrap(),
            bar[1].as_f64().unwrap(),
            bar[2].as_f64().unwrap(),
        )
    });
    let (x, width, plot) = under_way;
    assert!(
        width < minute.1 / 3.0,
        "a whole minute {minute:?}, the minute under way {under_way:?}"
    );
    assert!(
        x + width <= plot + 0.1 && plot - (x + width) < 1.5,
        "{bars}"
    );
    assert_eq!(
        browser.text("#throughput-caption"),
        "Jobs finished per minute, in the last hour (done and failed)"
    );
}

#[test]
fn the_throughput_chart_of_a_server_just_started_begins_at_its_start() {
    let before = std::time::Instant::now();
    let Some((server, _, browser)) = a_done_job_in_a_tall_browser(&[]) else {
        return;
    };
    browser.open(&server.url("/#/"));
    let title = browser.wait_for(
        "the job in the chart",
        "const title = document.querySelector('#chart-throughput .bar-done title'); \
         return title && title.textContent",
    );
    // No more than the time since the server's start: the 59 minutes before it are no
    // part of the chart.
    let up = before.elapsed().as_secs_f64();
    let ticks = browser.script(
        "return [...document.querySelectorAll('#chart-throughput .tick')].map((t) => t.textContent)",
    );
    let started = ticks[0].as_str().unwrap();
    let ago = |unit: &str| -> Option<f64> {
        started
            .strip_prefix("started ")?
            .strip_suffix(unit)?
            .parse()
            .ok()
    };
    let seconds = ago(" s ago")
        .or_else(|| ago(" min ago").map(|minutes| minutes * 60.0))
        .unwrap_or_else(|| panic!("the axis begins at {ticks}"));
    // Minutes are rounded: up to half of one more.
    assert!(seconds <= up + 30.0, "{started}, up {up} s");
    assert_eq!(ticks[1], "now");
    assert!(title.as_str().unwrap().ends_with(": 1 done"), "{title}");
    let label = browser.script(
        "return document.querySelector('#chart-throughput svg').getAttribute('aria-label')",
    );
    assert!(
        label
            .as_str()
            .unwrap()
            .starts_with("Jobs finished since the server started"),
        "{label}"
    );
    assert_eq!(
        browser.text("#throughput-caption"),
        "Jobs finished per minute, since the server started (done and failed)"
    );
}

#[test]
fn shutting_down_disables_the_button_and_says_the_server_drains_then_stopped() {
    if !browser_available() {
        return;
    }
    let (gate, mut server) = one_worker_behind_a_gate();
    // Held at the gate, it keeps the server draining until the test opens it.
    server.submit_json(EXAMPLE_JSON);
    let browser = Browser::tall();
    browser.open_overview(&server, DEPTH_SHOWN);
    // Whether it is disabled, and whether it is drawn filled, as a button to press.
    let pressable = "const button = document.getElementById('shutdown'); \
        return [button.disabled, getComputedStyle(button).backgroundColor !== 'rgba(0, 0, 0, 0)']";
    assert_eq!(browser.script(pressable), json!([false, true]));
    // Every question answered yes; the shutdown requests held until let go.
    browser.script(
        "window.confirm = () => true; window.heldShutdowns = []; const fetchNow = window.fetch; \
         window.fetch = (path, options = {}) => !String(path).includes('graceful_shutdown') ? fetchNow(path, options) \
           : new Promise((resolve) => window.heldShutdowns.push(() => resolve(fetchNow(path, options)))); \
         return null",
    );
    // A double click: one request, and a button that no longer looks pressable.
    browser.click("#shutdown");
    browser.click("#shutdown");
    assert_eq!(browser.script("return window.heldShutdowns.length"), 1);
    assert_eq!(browser.script(pressable), json!([true, false]));
    browser.script("window.heldShutdowns.forEach((send) => send()); return null");
    let note = browser.wait_for("the drain said", DRAINING);
    assert!(note.as_str().unwrap().contains("shutting down"), "{note}");
    // Still disabled while the server drains: once asked, there is nothing to press again.
    assert_eq!(browser.script(pressable), json!([true, false]));
    gate.open();
    assert!(server.wait_exit().success());
    let trouble = browser.wait_for(
        "the stop said",
        "const note = document.getElementById('trouble'); \
         return !note.hidden && note.textContent",
    );
    assert!(
        trouble
            .as_str()
            .unwrap()
            .starts_with("The server has shut down."),
        "{trouble}"
    );
    assert_eq!(browser.script(pressable), json!([true, false]));
    assert_eq!(browser.script("return window.heldShutdowns.length"), 1);
}

/// Whether the submit form's button is disabled.
const SUBMIT_DISABLED: &str = "return document.getElementById('submit-button').disabled";

/// The drain's note, when shown: its text, else false.
const DRAINING: &str = "const note = document.getElementById('draining'); \
    return !!note && !note.hidden && note.textContent";

#[test]
fn the_drain_is_said_on_every_view_until_the_server_is_back() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let args = gate.one_worker(&[]);
    let mut server = Server::start_in(dir.path(), &args);
    let address = server.base.trim_start_matches("http://").to_owned();
    // Held at the gate, it keeps the server draining until the test opens it.
    let id = server.submit_json(EXAMPLE_JSON);
    let browser = Browser::tall();
    browser.open(&server.url(&format!("/#/jobs/{id}")));
    browser.wait_for(
        "the job's page",
        "return document.getElementById('job-state').textContent === 'running'",
    );
    assert_eq!(browser.script(DRAINING), false);

    // Asked elsewhere (a signal, another tab): every view says so, not only the overview.
    let asked = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(asked.status, 200, "{}", asked.body);
    let note = browser.wait_for("the drain said on the job's page", DRAINING);
    assert!(note.as_str().unwrap().contains("shutting down"), "{note}");
    for view in ["#/jobs", "#/submit", "#/"] {
        browser.open(&server.url(&format!("/{view}")));
        browser.wait_for(&format!("the drain said on {view}"), DRAINING);
        // The form is kept, but not sent to a server that refuses new jobs.
        assert_eq!(browser.script(SUBMIT_DISABLED), true, "{view}");
    }

    // Stopped and started again on the address while the page did not look (a hidden
    // tab): its first answer says the server takes jobs again, and the note goes.
    browser.open(&server.url("/#/jobs"));
    browser.wait_for("the drain said on the list", DRAINING);
    browser.script(
        "Object.defineProperty(document, 'hidden', { value: true, configurable: true }); return null",
    );
    browser.wait_for("no refresh under way", "return !refresh.running");
    gate.open();
    assert!(server.wait_exit().success());
    let _again = Server::start_in(dir.path(), &["--bind", &address]);
    browser.script(
        "Object.defineProperty(document, 'hidden', { value: false, configurable: true }); \
         document.dispatchEvent(new Event('visibilitychange')); return null",
    );
    browser.wait_for(
        "the drain no longer said",
        "return document.getElementById('draining').hidden",
    );
    assert_eq!(browser.script(SUBMIT_DISABLED), false);
    assert!(browser.text("#jobs-rows").contains(&id));
}

#[test]
fn a_running_job_offers_no_delete_until_it_has_finished() {
    if !browser_available() {
        return;
    }
    let (gate, server) = one_worker_behind_a_gate();
    let id = server.submit_json(EXAMPLE_JSON);
    wait_until("the job running", || {
        server.get(&format!("/api/jobs/{id}")).json()["status"] == "running"
    });
    let browser = Browser::tall();
    browser.open(&server.url(&format!("/#/jobs/{id}")));
    browser.wait_for(
        "the running job",
        "return document.getElementById('job-state').textContent === 'running'",
    );
    // A DELETE would be refused with 409: there is no button to send one.
    assert_eq!(
        browser.script("return document.getElementById('job-actions').hidden"),
        true
    );
    gate.open();
    server.wait_finished(&id);
    browser.wait_for(
        "the delete button once done",
        "return document.getElementById('job-state').textContent === 'done' \
           && !document.getElementById('job-actions').hidden",
    );
}

#[test]
fn a_job_found_by_its_id_without_hyphens_is_shown() {
    let Some((server, id, browser)) = a_done_job_in_a_tall_browser(&[]) else {
        return;
    };
    // The find box takes an id with or without its hyphens, as its check says; the
    // server knows only the hyphenated form, so the page must not ask by the other.
    let bare = id.replace('-', "").to_uppercase();
    browser.open(&server.url("/#/jobs"));
    browser.type_into("#jobs-id", &bare);
    browser.click("#jobs-find button");
    let state = browser.wait_for(
        "the job's state",
        "const state = document.getElementById('job-state').textContent; \
         return ['done', 'gone'].includes(state) && state",
    );
    assert_eq!(state, "done");
    assert_eq!(browser.text("#job-id"), id);
    // A link of the other spelling is the same job too.
    browser.open("about:blank");
    browser.open(&server.url(&format!("/#/jobs/{bare}")));
    browser.wait_for_charts("the charts");
    assert_eq!(browser.text("#job-id"), id);
    // Hyphens alone are no id: no page of a job named by them.
    browser.open(&server.url(&format!("/#/jobs/{}", "-".repeat(36))));
    browser.wait_for(
        "the page not found",
        "return !document.getElementById('view-missing').hidden",
    );
}

#[test]
fn a_number_of_teams_beyond_what_a_double_holds_is_shown_as_given() {
    if !browser_available() {
        return;
    }
    let server = Server::start(&[]);
    // 2^63 - 1, the most the server takes: as a JavaScript number it reads 2^63.
    let id = server.submit_text("?num_teams=9223372036854775807", "21 25 28\n17");
    server.wait_finished(&id);
    let browser = Browser::tall();
    browser.open_job_charts(&server, &id, "the charts");
    assert_eq!(browser.text("#job-teams"), "9,223,372,036,854,775,807");
    let caption = browser.text("#gantt-caption");
    assert!(
        caption.ends_with("(the first 100 of 9,223,372,036,854,775,807 teams)"),
        "{caption}"
    );
}
