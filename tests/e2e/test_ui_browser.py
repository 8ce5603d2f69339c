"""The MLflow UI as a user sees it: a real sweep and promote, a real `mlflow server`, headless Chromium.

Set TEXTSWEEP_SCREENSHOTS=<dir> to also keep the screenshots there (the ones in docs/ come from here).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NAME = "uz-ui"  # the experiment and the registered model
TIMEOUT = 60  # seconds for each wait in the browser: the machine is slow and the UI is a large bundle

pytestmark = pytest.mark.e2e

if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (pip install selenium)")
from selenium.common.exceptions import ElementClickInterceptedException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, review_rows, write_sweep_file, use_own_store):
    """A finished 2-trial sweep with its best trial promoted to `NAME@champion`, in tmp/mlruns.

    Made in this process through the API, which the CLI's `sweep` and `promote` only wrap: what this
    module tests is what the server and the browser show of it, and each `textsweep` process would
    add seconds of imports.
    """
    import textsweep

    root = tmp_path_factory.mktemp("ui")
    source = root / "reviews_csv.csv"
    review_rows(600).to_csv(source, index=False)
    # 2 trials of 2 epochs; the champion a trial (its run shows the tokenizer, curves and test figures)
    search = {"algorithm": "random", "max_trials": 2, "space": {"embed_dim": {"values": [4, 8]}, "lstm_out": {"values": [4, 8]}}}
    config = write_sweep_file(root / "sweep.yaml", name=NAME, source=str(source), search=search, registry={"candidates": ["lstm"]})
    with pytest.MonkeyPatch.context() as patch:
        use_own_store(patch, root)
        textsweep.sweep(config, quiet=True)
        textsweep.promote(config)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(NAME)
    champion = client.get_model_version_by_alias(NAME, "champion")
    trial = client.get_run(champion.run_id)
    assert trial.data.tags["textsweep.kind"] == "trial"
    assert trial.info.artifact_uri.startswith(f"file://{root / 'mlruns' / 'artifacts'}")
    # MLflow 3 LoggedModels, not run artifacts: the trial's Keras model, and promote's served pyfunc
    models = sorted(client.get_logged_model(output.model_id).name for output in trial.outputs.model_outputs)
    assert len(models) == 2, models
    return {"root": root, "experiment_id": experiment.experiment_id, "version": champion.version,
            "trial_run_id": trial.info.run_id, "trial_name": trial.info.run_name, "logged_models": models}


@pytest.fixture(scope="module")
def server(sweep, mlflow_server, clean_env):
    """`mlflow server` on the sweep's store; run artifacts are file:// URIs it reads directly."""
    root = sweep["root"]
    with mlflow_server(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", root, env=clean_env()) as url:
        yield url


@pytest.fixture(scope="module")
def browser(sweep):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1600,1000", f"--user-data-dir={sweep['root'] / 'chromium-profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver: WebDriver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def wait_for(driver: WebDriver, *texts: str, timeout: float = TIMEOUT) -> str:
    """Wait until every text is visible on the page; return the page's text."""
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: all(t in page_text(d) for t in texts))
    except TimeoutException:
        shown = page_text(driver)
        missing = [t for t in texts if t not in shown]
        pytest.fail(f"{driver.current_url}: {missing} not shown after {timeout}s; the page shows:\n{shown[:3000]}")
    return page_text(driver)


def wait_until(driver: WebDriver, condition, what: str, timeout: float = TIMEOUT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException:
        pytest.fail(f"{driver.current_url}: {what} after {timeout}s; the page shows:\n{page_text(driver)[:3000]}")


def element_with_text(driver: WebDriver, text: str, tag: str = "*") -> WebElement:
    """The first visible element whose whole text is `text` (waits for it)."""
    xpath = f"//{tag}[normalize-space(.)='{text}']"
    return wait_until(driver, lambda d: next((e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()), False),
                      f"no visible {tag} {text!r}")


def click(driver: WebDriver, element: WebElement) -> None:
    """Click as a user does: a guidance popover in the way ("Got it") is dismissed first."""

    def attempt(d: WebDriver) -> bool:
        try:
            element.click()
            return True
        except ElementClickInterceptedException:
            for button in d.find_elements(By.XPATH, "//button[normalize-space()='Got it']"):
                if button.is_displayed():
                    button.click()
            return False

    wait_until(driver, attempt, f"could not click {element.text!r}")


def close_assistant(driver: WebDriver) -> None:
    """Close the MLflow Assistant side panel, which a fresh profile opens, so it hides nothing."""
    if "MLflow Assistant" in page_text(driver):
        for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
            if button.is_displayed():
                click(driver, button)
                break


def screenshot(driver: WebDriver, sweep: dict, name: str) -> None:
    directory = os.environ.get("TEXTSWEEP_SCREENSHOTS")
    if directory:
        time.sleep(1)  # a picture kept for the docs: let the last layout settle
    driver.save_screenshot(str(sweep["root"] / name))
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sweep["root"] / name, Path(directory) / name)


def test_the_ui_shows_nested_trials_their_artifacts_and_the_champion(sweep, server, browser):
    driver = browser
    trial_name, trial_run_id = sweep["trial_name"], sweep["trial_run_id"]

    # a. the experiment's URL opens on its runs (a model-training experiment, not the GenAI
    # overview) with no view toggle clicked; the sweep run expands to a nested run per trial
    from textsweep.tracking import experiment_url

    driver.get(experiment_url(server, sweep["experiment_id"]))  # the link `textsweep sweep` prints
    wait_for(driver, NAME, f"{NAME}-sweep", "matching runs")
    close_assistant(driver)
    trials = ("trial-0", "trial-1")
    if not all(t in page_text(driver) for t in trials):  # child runs start collapsed under their parent
        sweep_cell = wait_until(
            driver,
            lambda d: d.find_element(By.XPATH, f"//*[@role='gridcell'][.//a[normalize-space()='{NAME}-sweep']]"),
            "no run-name cell for the sweep run",
        )
        click(driver, sweep_cell.find_element(By.TAG_NAME, "button"))  # the [+] expander beside the run name
    wait_for(driver, *trials)
    for run_name in (f"{NAME}-sweep", *trials):  # each a visible link in the run table
        element_with_text(driver, run_name, tag="a")
    assert "4 matching runs" in page_text(driver)  # the sweep, 2 trials and the linear reference
    element_with_text(driver, "reference-tfidf-logreg", tag="a")
    screenshot(driver, sweep, "experiment_nested_runs.png")

    # b. the champion's trial: its logged models, then its artifacts
    click(driver, element_with_text(driver, trial_name, tag="a"))
    wait_until(driver, lambda d: d.current_url.endswith(f"/runs/{trial_run_id}"), f"the link did not open run {trial_run_id}")
    text = wait_for(driver, "About this run", "Logged models", "Registered models")
    assert f"Parent run\n{NAME}-sweep" in text
    heading = element_with_text(driver, f"Logged models ({len(sweep['logged_models'])})")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", heading)
    table = heading.find_element(By.XPATH, "./ancestor::*[.//*[normalize-space(text())='Model attributes']][1]").text
    cells = table.split("\n")
    assert set(sweep["logged_models"]) <= set(cells) and cells.count("Ready") == len(sweep["logged_models"]), table
    screenshot(driver, sweep, "trial_logged_models.png")

    click(driver, element_with_text(driver, "Artifacts", tag="button"))
    wait_until(driver, lambda d: d.current_url.endswith(f"/runs/{trial_run_id}/artifacts"), "the Artifacts tab did not open")
    wait_for(driver, "tokenizer", "learning_curves.png", "test_confusion_matrix.png", "test_roc_curve.png")
    tokenizer = element_with_text(driver, "tokenizer")
    assert "fa-folder" in tokenizer.get_attribute("innerHTML")  # shown as a folder
    click(driver, tokenizer)
    wait_for(driver, "vocabulary.json")  # the folder opens
    click(driver, element_with_text(driver, "learning_curves.png"))
    text = wait_for(driver, "Path: file://", "/artifacts/learning_curves.png")
    assert str(sweep["root"] / "mlruns" / "artifacts") in text
    wait_until(driver, lambda d: d.execute_script(
        "return [...document.images].some(i => i.complete && i.naturalWidth > 100 && i.clientWidth > 100)"),
        "the learning curves image was not previewed")
    screenshot(driver, sweep, "trial_artifacts.png")

    # c. the registered model: the promoted version holds the champion alias
    driver.get(f"{server}/#/models/{NAME}")
    wait_for(driver, "Registered Models", "Versions", f"Version {sweep['version']}", "Aliases")
    headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "[role='columnheader']")]
    row = element_with_text(driver, f"Version {sweep['version']}", tag="a").find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
    cells = [c.text for c in row.find_elements(By.CSS_SELECTOR, "[role='cell']")]
    assert len(cells) == len(headers), (headers, cells)
    aliases = cells[headers.index("Aliases")]
    assert re.sub(r"\s+", "", aliases) == "@champion", aliases
    assert f"Trial {sweep['trial_name'].split('-')[1]} of sweep run" in cells[headers.index("Description")]
    screenshot(driver, sweep, "registered_model_champion.png")
