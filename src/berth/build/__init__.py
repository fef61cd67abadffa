"""berth.build"""
