from berth.runtime.main import entry

entry()
