"""berth.content"""
