"""The web form in a real browser: headless Chromium from Debian's packages, driven by Selenium and chromedriver.

``scripts/browser.sh`` (run by ``make test``) installs both. The form is
served by waitress, as ``maild web`` serves it, on a SQLite database; the
acknowledgment goes through the outbox to a real SMTP server. With
``MAILD_SCREENSHOTS=1`` the screenshots of the form and of the confirmation
are written into ``docs/`` for the README.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import waitress
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from maild.daemon.outbox.sender import OutboxSender
from maild.daemon.outbox.transport import make_transport
from maild.settings import Settings
from maild.store import Store
from maild.web.app import create_app
from maild.web.serve import open_desk
from tests.daemon_kit import FakeClock
from tests.factories import REFERENTE
from tests.servers import SmtpCapture, free_port
from tests.web_kit import MONDAY_10, REFERENTE_PIN, USER, USERS_PIN, Clock, web_settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def config(tmp_path: Path, smtp_server: SmtpCapture) -> Settings:
    s = web_settings(f"sqlite:///{tmp_path}/maild.db")
    return replace(s, smtp=replace(s.smtp, kind="smtp", host=smtp_server.host, port=smtp_server.port))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def site(config: Settings, clock: Clock) -> Iterator[str]:
    """The form served by waitress in a thread; its address."""
    with open_desk(config) as desk:
        port = free_port()
        server: Any = waitress.create_server(create_app(desk, clock=clock), host="127.0.0.1", port=port, threads=2)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{port}/"
        server.close()
        thread.join(5)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    driver_path = shutil.which("chromedriver")
    assert driver_path and shutil.which("chromium"), "run `bash scripts/browser.sh` (make test does)"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,1300",
                "--lang=it-IT"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "it-IT,it"})  # what the page follows
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def fill(driver: webdriver.Chrome, *, pin: str, category: str = "anagrafica", email_address: str = USER) -> None:
    Select(driver.find_element(By.ID, "administration")).select_by_visible_text("Ateneo")
    driver.find_element(By.ID, "pin").send_keys(pin)
    driver.find_element(By.ID, "name").send_keys("Anna Verdi")
    driver.find_element(By.ID, "email").send_keys(email_address)
    driver.find_element(By.ID, f"category-{category}").click()
    driver.find_element(By.ID, "subject").send_keys("Telefono in rubrica")
    driver.find_element(By.ID, "description").send_keys("Vorrei aggiornare il mio numero di telefono in rubrica.")


def submit(driver: webdriver.Chrome) -> None:
    """Send the form and wait for the next page: a mark on the old document is absent from the new one."""
    # not the old button going stale: asked mid-navigation, chromedriver may fail with "Node with
    # given id does not belong to the document" instead of reporting a stale element
    driver.execute_script("document.documentElement.dataset.sent = 'yes'")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && document.documentElement.dataset.sent === undefined"))


def screenshot(driver: webdriver.Chrome, name: str, tmp_path: Path) -> None:
    target = DOCS if os.environ.get("MAILD_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(exist_ok=True)
    driver.save_screenshot(str(target / name))


def test_a_person_sends_a_request_and_gets_the_ticket_and_the_acknowledgment(
        site: str, browser: webdriver.Chrome, config: Settings, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    browser.get(site)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Richiesta di assistenza"
    fill(browser, pin=USERS_PIN)
    screenshot(browser, "web-form.png", tmp_path)
    submit(browser)
    reference = browser.find_element(By.ID, "ticket").text
    assert "lunedì 17 maggio 2027 alle 10:00" in browser.find_element(By.ID, "take-in").text
    screenshot(browser, "web-confirmation.png", tmp_path)
    with Store.open(config.database.url) as store:
        ticket = store.ticket(reference)
        assert ticket is not None and (ticket.channel, ticket.requester) == ("web", USER)
        sender = OutboxSender(store, make_transport(config), FakeClock(MONDAY_10 + timedelta(days=1)),
                              config.limits, "test:browser")
        sender.drain()
        sender.transport.close()
    ack = email.message_from_bytes(smtp_server.wait_for(1)[0].data, policy=email.policy.default)
    assert ack["To"] == USER and reference in ack["Subject"]


def test_the_english_form_refuses_a_privileged_request_with_the_users_pin(
        site: str, browser: webdriver.Chrome, config: Settings) -> None:
    browser.get(site + "?lang=en")
    fill(browser, pin=USERS_PIN, category="lifecycle")
    submit(browser)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Request not authorized"
    reference = browser.find_element(By.ID, "ticket").text
    with Store.open(config.database.url) as store:
        story = store.ticket_story(reference)
        assert story is not None and story.ticket.decision == "rejected"
        assert [(r.kind, r.recipients) for r in story.replies] == [("refusal", (USER,)),
                                                                   ("referente_notice", (REFERENTE,))]


def test_wrong_pins_lock_the_form_out_with_a_clear_message(site: str, browser: webdriver.Chrome,
                                                           clock: Clock) -> None:
    browser.get(site)
    for attempt in range(5):
        clock.now = MONDAY_10 + timedelta(minutes=attempt)
        fill(browser, pin="0000")
        submit(browser)
        message = browser.find_element(By.ID, "pin-error").text
        assert message == ("PIN errato." if attempt < 4 else
                           "Troppi PIN errati: le richieste con PIN sono bloccate fino alle 11:00. Riprovi dopo.")
        for field in ("name", "email", "subject", "description"):  # what was typed stays, but not the PIN
            browser.find_element(By.ID, field).clear()
        assert browser.find_element(By.ID, "pin").get_attribute("value") == ""
    fill(browser, pin=REFERENTE_PIN)
    submit(browser)
    assert "bloccate fino alle 11:00" in browser.find_element(By.ID, "pin-error").text
    assert browser.find_element(By.ID, "pin").get_attribute("aria-invalid") == "true"
