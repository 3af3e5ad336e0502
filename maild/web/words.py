"""What the form says, in Italian and English: the language is the browser's, or the one switched to."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from maild.records import Category
from maild.responder import category_words

LANGUAGES: Final = (("it", "Italiano"), ("en", "English"))

_IT: Final = {
    "title": "Richiesta di assistenza",
    "intro": "Compili tutti i campi. Il PIN è quello che l'help desk ha dato alla sua Amministrazione.",
    "language": "Lingua",
    "administration": "Amministrazione",
    "choose": "— scelga —",
    "pin": "PIN",
    "pin_hint": "Il PIN del referente tecnico o il PIN degli utenti della sua Amministrazione.",
    "name": "Nome e cognome",
    "email": "Indirizzo e-mail per la risposta",
    "email_hint": "Un indirizzo della sua Amministrazione. Con il PIN del referente la risposta va al referente.",
    "category": "Tipo di richiesta",
    "subject": "Oggetto",
    "description": "Descrizione",
    "submit": "Invia la richiesta",
    "fix_errors": "La richiesta non è stata inviata. Correggere:",
    "required": "Campo obbligatorio.",
    "too_long": "Troppo lungo: al massimo {limit} caratteri.",
    "bad_email": "Non è un indirizzo e-mail valido.",
    "bad_choice": "Scelga un valore dall'elenco.",
    "bad_pin": "PIN errato.",
    "no_pin": "Questa Amministrazione non ha un PIN per le richieste via web.",
    "locked": "Troppi PIN errati: le richieste con PIN sono bloccate fino alle {until}. Riprovi dopo.",
    "foreign_email": "Con il PIN degli utenti la risposta può andare solo a un indirizzo dei domini "
                     "dell'Amministrazione ({domains}).",
    "done_title": "Richiesta registrata",
    "done_ticket": "Numero di pratica:",
    "done_category": "Tipo:",
    "done_take_in": "Sarà presa in carico",
    "out_of_hours": "fuori dall'orario di servizio: alla prossima apertura",
    "done_ack": "Riceverà una conferma per e-mail con questo numero.",
    "refused_title": "Richiesta non autorizzata",
    "refused_ticket": "La richiesta è stata registrata con il numero",
    "refused_text": "Il PIN degli utenti non permette questo tipo di richiesta: la può fare solo il referente "
                    "tecnico della sua Amministrazione, che è stato informato.",
    "another": "Un'altra richiesta",
    "back": "Torna al modulo",
    "expired_title": "Modulo scaduto",
    "expired_text": "Il modulo è scaduto o non è stato inviato da questa pagina. Lo ricarichi e lo invii di nuovo.",
    "too_large_title": "Richiesta troppo grande",
    "too_large_text": "La richiesta supera la dimensione massima accettata.",
}

_EN: Final = {
    "title": "Help desk request",
    "intro": "Please fill in every field. The PIN is the one the help desk gave your Administration.",
    "language": "Language",
    "administration": "Administration",
    "choose": "— choose —",
    "pin": "PIN",
    "pin_hint": "Your Administration's technical contact (referente) PIN, or its users' PIN.",
    "name": "Full name",
    "email": "E-mail address for the answer",
    "email_hint": "An address of your Administration. With the referente's PIN the answer goes to the referente.",
    "category": "Request type",
    "subject": "Subject",
    "description": "Description",
    "submit": "Send the request",
    "fix_errors": "The request was not sent. Please correct:",
    "required": "Required.",
    "too_long": "Too long: at most {limit} characters.",
    "bad_email": "Not a valid e-mail address.",
    "bad_choice": "Choose a value from the list.",
    "bad_pin": "Wrong PIN.",
    "no_pin": "This Administration has no PIN for web requests.",
    "locked": "Too many wrong PINs: PIN requests are locked until {until}. Please try again then.",
    "foreign_email": "With the users' PIN the answer can only go to an address in the Administration's "
                     "domains ({domains}).",
    "done_title": "Request recorded",
    "done_ticket": "Ticket number:",
    "done_category": "Type:",
    "done_take_in": "It will be taken in",
    "out_of_hours": "outside service hours: at the next opening",
    "done_ack": "You will receive a confirmation by e-mail with this number.",
    "refused_title": "Request not authorized",
    "refused_ticket": "The request was recorded with the number",
    "refused_text": "The users' PIN does not allow this kind of request: only your Administration's technical "
                    "contact (referente) can make it, and they have been told.",
    "another": "Another request",
    "back": "Back to the form",
    "expired_title": "Form expired",
    "expired_text": "The form expired or was not sent from this page. Please reload it and send it again.",
    "too_large_title": "Request too large",
    "too_large_text": "The request is larger than the accepted maximum.",
}

WORDS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType({"it": MappingProxyType(_IT),
                                                                   "en": MappingProxyType(_EN)})


def categories(lang: str) -> tuple[tuple[str, str], ...]:
    """The four request types in words, as the acknowledgment names them."""
    return tuple((c.value, category_words(c, lang).capitalize()) for c in Category)
