"""berth.api"""
