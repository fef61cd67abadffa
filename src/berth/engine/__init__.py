"""berth.engine"""
