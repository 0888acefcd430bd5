"""The log writer: one write per event-loop turn, immediate writes outside a loop."""

from __future__ import annotations

import asyncio
import io

import orjson
import structlog

from aicc_site.logging import LoopTurnWriter


class RecordingFile(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_lines_outside_an_event_loop_are_written_at_once() -> None:
    file = RecordingFile()
    writer = LoopTurnWriter(file)
    writer.info("one")
    writer.warning("two")
    assert file.writes == ["one\n", "two\n"]


async def test_lines_of_one_loop_turn_leave_in_one_write_when_the_turn_ends() -> None:
    file = RecordingFile()
    writer = LoopTurnWriter(file)
    writer.info("a")
    writer.error("b")
    assert file.writes == []  # still this turn
    await asyncio.sleep(0)
    assert file.writes == ["a\nb\n"]
    writer.info("c")
    await asyncio.sleep(0)
    assert file.getvalue() == "a\nb\nc\n"


async def test_lines_from_concurrent_tasks_all_arrive_whole_and_in_order() -> None:
    file = RecordingFile()
    writer = LoopTurnWriter(file)

    async def request(number: int) -> None:
        for step in range(3):
            writer.info(f"{number}:{step}")
            await asyncio.sleep(0)

    await asyncio.gather(*(request(number) for number in range(50)))
    await asyncio.sleep(0)
    lines = file.getvalue().splitlines()
    assert sorted(lines) == sorted(f"{n}:{s}" for n in range(50) for s in range(3))
    for number in range(50):
        mine = [line for line in lines if line.startswith(f"{number}:")]
        assert mine == [f"{number}:{s}" for s in range(3)]
    assert len(file.writes) <= 4  # one per loop turn, not one per line


def test_flush_writes_what_a_stopped_loop_left_behind() -> None:
    file = RecordingFile()
    writer = LoopTurnWriter(file)
    loop = asyncio.new_event_loop()

    async def log_then_stop() -> None:
        writer.info("last words")
        loop.stop()  # the turn's flush was scheduled for a turn that never comes

    task = loop.create_task(log_then_stop())
    loop.run_forever()
    assert task.done()
    loop.close()
    assert file.getvalue() == ""
    writer.flush()  # what atexit does
    assert file.getvalue() == "last words\n"


def test_production_rendering_goes_through_the_writer_as_json() -> None:
    file = RecordingFile()
    writer = LoopTurnWriter(file)
    logger = structlog.wrap_logger(
        writer, processors=[structlog.processors.JSONRenderer(serializer=_dumps)]
    )
    logger.info("request_completed", status=200)
    assert orjson.loads(file.writes[0]) == {"event": "request_completed", "status": 200}


def _dumps(obj: object, default: object = None) -> str:
    return orjson.dumps(obj).decode()
