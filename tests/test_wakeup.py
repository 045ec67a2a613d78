"""The watcher's wake-ups (``pgmigrate.wakeup``), between real threads."""

import threading

from pgmigrate.wakeup import Latch, Wakeup


def test_a_wakeup_sent_before_the_wait_is_taken_once():
    wakeup = Wakeup()
    wakeup.set()
    wakeup.set()  # while the waiter is busy: the two count as one
    assert wakeup.wait(0) is True
    assert wakeup.wait(0) is False


def test_a_waiting_thread_is_woken():
    wakeup = Wakeup()
    woken = threading.Event()

    def waiter():
        if wakeup.wait(30):
            woken.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    wakeup.set()
    thread.join(30)
    assert woken.is_set()


def test_a_latch_stays_set_for_every_wait():
    latch = Latch()
    assert latch.wait(0) is False and not latch.is_set()
    thread = threading.Thread(target=latch.set)
    thread.start()
    thread.join(30)
    assert latch.wait(30) is True
    assert latch.wait(0) is True and latch.is_set()
    latch.set()  # again: no error
