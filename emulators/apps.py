from django.apps import AppConfig


class EmulatorsConfig(AppConfig):
    """Local stand-ins and demo traffic: the Salesforce emulator, the mail sink, the product simulator.

    Outside the layers: product code never imports it; the demo, the tests and the benchmarks do.
    """

    name = "emulators"
    verbose_name = "Local stand-ins"
